// Package watch keeps a cluster's routes converged after bootstrap: it
// follows the Node objects (a client-go informer) and the inventory file,
// and runs the same engine as `routepush apply` (package orchestrator) on
// the nodes an event affects, with a periodic full resync for drift, one
// writer at a time under a Lease (leader election).
//
// It speaks no SSH: the Connector that reaches nodes is given to it (cmd
// builds it from package remote). What a round did is reported to
// Observers (Prometheus metrics, Kubernetes Events, logs).
package watch
