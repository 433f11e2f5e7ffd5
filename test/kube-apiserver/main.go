// Command kube-apiserver is the upstream Kubernetes API server, built here
// from the k8s.io/kubernetes module so the e2e tests can run routepush
// against a real API server. It lives in its own module so routepush's
// go.mod never carries k8s.io/kubernetes and its dependencies.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
