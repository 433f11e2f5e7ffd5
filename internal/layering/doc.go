// Package layering holds no code: its test checks the import rules
// between routepush's packages, so a change that breaks them fails
// `go test ./...` rather than a review.
//
// The layers, each importing only those below it:
//
//	cmd/...       the CLI: flags, configuration, output; may import every layer
//	watch         routepush watch: informers, rounds, leader election, observers;
//	              drives orchestrator, never speaks SSH (a Connector is given)
//	orchestrator  pure: plan, diff, decide, report; never imports remote (it
//	              never speaks SSH: it drives nodes through its Host interface)
//	inventory     the node table (file or Kubernetes API); imports route
//	remote        the only package that speaks SSH and SFTP; imports host, route
//	host          what a node's host reports to the orchestrator: a batch's
//	              result and the errors it decides on; imports route
//	route         iproute2's model, pure: it reads no files and runs nothing
//
// Any of them may import the leaves under internal/ (safetext, proxyjump,
// nodepath, homedir, persist), which import no other routepush package. Tests may
// also use the helpers under test/. test/... and bench/... are tools outside
// the layers and may import anything.
package layering
