package app

import "github.com/spf13/cobra"

// newCheckCommand is apply reading and diffing only: it takes apply's
// flags less those that only matter once a node is changed (checkFlags).
func newCheckCommand(d deps) *cobra.Command {
	f := &applyFlags{}
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Show what apply would change on each node; change nothing (routepush --check)",
		Long: `Show what apply would change on each node, as a diff grouped by node, and
change nothing. Exit codes as Terraform's plan -detailed-exitcode: 0 every
node in sync, 2 changes pending, 1 error (or apply would refuse a node).`,
		Example: `  routepush check -i hosts.yaml
  routepush check -i hosts.yaml --persist         # also the routes files and boot units
  routepush check --kubeconfig admin.conf -o json # for scripts: docs/report.schema.json`,
		Args:          probeArgs(f),
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          func(cmd *cobra.Command, _ []string) error { return runApply(cmd, d, f) },
	}
	f.add(cmd.Flags(), true)
	return cmd
}
