"""KISim: the simulator (see README). Importing it picks the compiled engine or its sources (:mod:`simulator.compiled`)."""

from simulator.compiled import activate as _activate

_activate()
