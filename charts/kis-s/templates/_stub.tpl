{{/* A stub inference server Deployment and its Service: the stub of `stub:` and each stage of `pipeline:`.
Context: dict "root" (the chart's), "name", "component", "selector" (YAML), "gpu", "model", "startupDelay", "timeScale",
"autoscaled" (then no replicas: the autoscaler owns them), "replicas", "podLabels" (besides the selector's). */}}
{{- define "kis-s.stubWorkload" -}}
{{- $ := .root -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .name }}
  namespace: {{ $.Release.Namespace }}
  labels:
    {{- include "kis-s.labels" $ | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  {{- if not .autoscaled }}
  replicas: {{ .replicas }}
  {{- end }}
  {{- /* With the autoscaler, spec.replicas is left out: helm upgrade then never resets what the autoscaler set. */}}
  selector:
    matchLabels:
      {{- .selector | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "kis-s.labels" $ | nindent 8 }}
        app.kubernetes.io/component: {{ .component }}
        # plain Prometheus (deploy/prometheus/prometheus.yml) copies the pod label `app` into `deployment`
        app: {{ .name }}
        {{- with .podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- with $.Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ $.Values.stub.port | quote }}
        prometheus.io/path: /metrics
        {{- with $.Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      automountServiceAccountToken: false
      {{- include "kis-s.podCommon" $ | nindent 6 }}
      securityContext:
        {{- include "kis-s.podSecurityContext" $ | nindent 8 }}
      containers:
        - name: stub
          image: {{ include "kis-s.image" $ }}
          imagePullPolicy: {{ $.Values.image.pullPolicy }}
          args: [stub, serve, --host=0.0.0.0, "--port={{ $.Values.stub.port }}", "--gpu={{ .gpu }}", "--model={{ .model }}",
                 "--startup-delay={{ .startupDelay }}", "--time-scale={{ .timeScale }}"]
          ports:
            - name: http
              containerPort: {{ $.Values.stub.port }}
          readinessProbe:
            httpGet: {path: /health, port: http}
            periodSeconds: 2
          livenessProbe:
            tcpSocket: {port: http}
            periodSeconds: 10
          resources:
            {{- toYaml $.Values.stub.resources | nindent 12 }}
          securityContext:
            {{- include "kis-s.containerSecurityContext" $ | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            # the image's HOME: onnxruntime keeps an identifier there (the root file system is read-only)
            - name: home
              mountPath: /home/kis
      volumes:
        - name: tmp
          emptyDir: {}
        - name: home
          emptyDir: {}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ .name }}
  namespace: {{ $.Release.Namespace }}
  labels:
    {{- include "kis-s.labels" $ | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  selector:
    {{- .selector | nindent 4 }}
  ports:
    - name: http
      port: {{ $.Values.stub.port }}
      targetPort: http
{{- end }}
