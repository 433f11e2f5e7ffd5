package app

import (
	"github.com/spf13/cobra"
)

// deps are what every verb's command is built with.
type deps struct {
	streams Streams
	// active is told the id of the apply in progress, for Main's signal
	// handler; nil: nobody asks.
	active *activeRun
}

// newRootCommand is routepush without a verb, which is apply, and every
// verb. Each verb registers only the flags it reads.
func newRootCommand(d deps) *cobra.Command {
	f := &applyFlags{}
	cmd := &cobra.Command{
		Use:   "routepush [--inventory hosts.yaml] [--kubeconfig FILE] [--check]",
		Short: "Push pod-network host routes to every Kubernetes node over SSH",
		Long: `routepush gives every node a route to each other node's pod CIDR via that
node's internal IP, over SSH, all nodes at once. It verifies every route and
restores every changed node exactly if anything fails.

The node table (names, internal IPs, pod CIDRs) comes from the Kubernetes
API, read with kubectl's kubeconfig rules, or from an inventory file alone
when --inventory is given without --kubeconfig or --context. Given both, the
API says where pods are and the inventory how to reach each node over SSH.

Exit codes: 0 done or in sync, 1 error (changed nodes rolled back) or a
--probe pair that did not answer, 2 --check found changes, 130 interrupted.`,
		Example: `  routepush check                              # nodes from ~/.kube/config's cluster; change nothing
  routepush plan -i hosts.yaml                 # each node's routes from the inventory; connect nowhere
  routepush check -i hosts.yaml                # no cluster: the inventory is the table
  routepush -i hosts.yaml --persist            # apply, verify, keep for the next boot; roll back on failure
  routepush --kubeconfig admin.conf -i hosts.yaml --mark-network-available
  routepush -i hosts.yaml --limit 'worker-*,!worker-3' --canary 1
  routepush -i inventory.ini --limit 'workers:!node-3'   # an Ansible inventory and its groups
  routepush check -i hosts.yaml -o json        # one JSON document (docs/report.schema.json)
  routepush rollback -i hosts.yaml             # undo the newest run from the nodes' records`,
		Args:          probeArgs(f),
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          func(cmd *cobra.Command, _ []string) error { return runApply(cmd, d, f) },
	}
	cmd.SetOut(d.streams.Out)
	cmd.SetErr(d.streams.ErrOut)
	f.add(cmd.Flags(), false)
	cmd.AddCommand(
		newApplyCommand(d),
		newCheckCommand(d),
		newPlanCommand(d),
		newProbeCommand(d),
		newRollbackCommand(d),
		newVersionCommand(d),
		newWatchCommand(d),
	)
	return cmd
}
