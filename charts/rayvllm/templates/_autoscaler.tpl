{{/*
The KubeRay autoscaler sidecar's access to the Kubernetes API. The Ray pods run without the ServiceAccount
token (`serviceAccount.automountServiceAccountToken: false`); the sidecar alone needs it, to scale the
RayCluster, so the head pod gets the token as a projected volume that only the sidecar mounts.
*/}}

{{/*
rayvllm.autoscaler.tokenVolumeName: the name of that volume in the head pod.
Usage: {{ include "rayvllm.autoscaler.tokenVolumeName" $ }}
*/}}
{{- define "rayvllm.autoscaler.tokenVolumeName" -}}
autoscaler-kube-api-access
{{- end }}

{{/*
rayvllm.autoscaler.tokenVolume: the volume source: what the kubelet would mount, token, CA and namespace.
Usage: {{- include "rayvllm.autoscaler.tokenVolume" $ | nindent 6 }}
*/}}
{{- define "rayvllm.autoscaler.tokenVolume" -}}
projected:
  defaultMode: 0444
  sources:
    - serviceAccountToken:
        path: token
        expirationSeconds: 3607
    - configMap:
        name: kube-root-ca.crt
        items:
          - key: ca.crt
            path: ca.crt
    - downwardAPI:
        items:
          - path: namespace
            fieldRef:
              fieldPath: metadata.namespace
{{- end }}
