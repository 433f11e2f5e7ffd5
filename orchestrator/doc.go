// Package orchestrator turns a node table into routes and gets them onto
// every node safely: it plans each node's routes, diffs them against the
// node's current table, applies the differences on many nodes at once,
// verifies them, and rolls every changed node back to its exact previous
// table when anything fails.
//
// It is pure logic. It reaches nodes only through the Host interface
// (implemented over SSH by package remote, and by fakes in tests), so every
// decision here can be tested without a network.
//
// A run (Run, run.go) goes through four phases: read every node's tables
// and diff them (nodeRun.prepare, noderun.go), decide whether anything may
// change, apply and verify (nodeRun.apply, apply.go), and settle: roll
// back if anything failed, record, release. A failing run's rollback and
// `routepush rollback` (Restore, restore.go) undo a node with the same
// code (undoNode, undo.go).
package orchestrator
