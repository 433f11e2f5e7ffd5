// Command routepush gives a Kubernetes cluster flat layer-3 pod networking
// with plain host routes, pushed to every node over SSH.
package main

import "github.com/routepush/routepush/cmd/routepush/app"

func main() { app.Main() }
