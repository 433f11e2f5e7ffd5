package app

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/routepush/routepush/orchestrator"
)

// planFlags are the settings of plan: where the node table comes from and
// what the routes look like.
type planFlags struct {
	baseFlags
	source sourceFlags
	table  tableFlag
	routes routeFlags
}

func newPlanCommand(d deps) *cobra.Command {
	f := &planFlags{}
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Print the routes each node should have, without connecting to any",
		Example: `  routepush plan -i hosts.yaml
  routepush plan --kubeconfig admin.conf -l node-role.kubernetes.io/worker=`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          func(cmd *cobra.Command, _ []string) error { return runPlan(cmd, d, f) },
	}
	fs := cmd.Flags()
	f.baseFlags.add(fs)
	f.source.add(fs)
	f.table.add(fs)
	f.routes.add(fs)
	return cmd
}

func (f *planFlags) load(cmd *cobra.Command) error {
	if err := loadSettings(cmd); err != nil {
		return err
	}
	if err := f.table.resolve(); err != nil {
		return err
	}
	if err := f.routes.check(); err != nil {
		return err
	}
	if err := f.source.check(); err != nil {
		return err
	}
	return f.baseFlags.check()
}

// runPlan prints every node's planned routes, as `ip route replace` would
// be given them, from the node table alone.
func runPlan(cmd *cobra.Command, d deps, f *planFlags) error {
	if err := f.load(cmd); err != nil {
		return err
	}
	nodes, _, _, err := loadNodes(cmd.Context(), &f.source, newLogger(d.streams, &f.baseFlags))
	if err != nil {
		return err
	}
	plan := orchestrator.NewPlanWith(nodes, f.routes.planOptions(&f.table))
	out := d.streams.Out
	for i := range nodes {
		h := plan.Host(i)
		fmt.Fprintf(out, "%s: %d routes\n", nodes[i].Name, h.Len())
		for k := range h.Len() {
			fmt.Fprintf(out, "  %s\n", h.Route(k).Spec())
		}
	}
	return nil
}
