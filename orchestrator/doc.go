// Package orchestrator turns a node table into routes and gets them onto
// every node safely: it plans each node's routes, diffs them against the
// node's current table, applies the differences on many nodes at once,
// verifies them, and rolls every changed node back to its exact previous
// table when anything fails.
//
// It is pure logic. It reaches nodes only through the Host interface
// (implemented over SSH by package remote, and by fakes in tests), so every
// decision here can be tested without a network.
package orchestrator
