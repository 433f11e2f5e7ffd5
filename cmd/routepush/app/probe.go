package app

import (
	"strconv"

	"github.com/spf13/cobra"
)

// newProbeCommand is check with the pod-to-pod probe, judged by it: each
// node pings K others' pod addresses from its own over the sessions that
// read it, and nothing is changed anywhere.
func newProbeCommand(d deps) *cobra.Command {
	f := &applyFlags{}
	cmd := &cobra.Command{
		Use:   "probe",
		Short: "Ping pod to pod between the nodes, as they are now; change nothing",
		Long: `Read every node as check does, then make each node ping, from its own address
in its pod CIDR, the pod addresses of K other nodes (3 unless --probe says;
every node is pinged by K, the choice the same every time). Prints the pairs
that did not answer, each with the likely cause preflight found, and on a
terminal a matrix of up to 30 nodes. Changes nothing.

Exit codes: 0 every pair answered, 1 a pair did not or an error, 130
interrupted.`,
		Example: `  routepush probe -i hosts.yaml
  routepush probe -i hosts.yaml --probe all    # every pair, on a small cluster
  routepush probe -i hosts.yaml -o json        # the pairs in "probe" (docs/report.schema.json)`,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("probe") {
				f.probe = strconv.Itoa(defaultProbeTargets)
			}
			f.probeVerb = true
			return runApply(cmd, d, f)
		},
	}
	f.add(cmd.Flags(), true)
	cmd.Args = probeArgs(f)
	return cmd
}
