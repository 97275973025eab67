// Command pss-check evaluates pods against a Pod Security Standard level with the Kubernetes API server's own
// checks (k8s.io/pod-security-admission, the PodSecurity admission plugin's library).
//
// Input on stdin: a JSON list of Pods. Output on stdout: a JSON list of {pod, check, detail}, one per
// forbidden finding; empty when every pod is allowed.
//
// usage: pss-check [-level restricted|baseline] < pods.json
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

type finding struct {
	Pod    string `json:"pod"`
	Check  string `json:"check"`
	Detail string `json:"detail"`
}

func main() {
	levelName := flag.String("level", "restricted", "Pod Security Standard level: restricted or baseline")
	flag.Parse()
	level, err := api.ParseLevel(*levelName)
	if err != nil {
		fail(err)
	}
	var pods []corev1.Pod
	if err := json.NewDecoder(os.Stdin).Decode(&pods); err != nil {
		fail(fmt.Errorf("reading pods from stdin: %w", err))
	}
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		fail(err)
	}
	levelVersion := api.LevelVersion{Level: level, Version: api.LatestVersion()}
	findings := []finding{}
	for i := range pods {
		pod := &pods[i]
		for _, result := range evaluator.EvaluatePod(levelVersion, &pod.ObjectMeta, &pod.Spec) {
			if !result.Allowed {
				findings = append(findings, finding{pod.Name, result.ForbiddenReason, result.ForbiddenDetail})
			}
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(findings); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "pss-check:", err)
	os.Exit(2)
}
