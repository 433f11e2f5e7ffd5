package app

import (
	"context"
	"fmt"
	"path"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/routepush/routepush/orchestrator"
	"github.com/routepush/routepush/route"
)

// addSubcommands adds apply and check (the root command's job, spelled
// out), plan and version. run is the root command's own RunE.
func addSubcommands(ctx context.Context, root *cobra.Command, streams Streams, v *viper.Viper) {
	run := root.RunE
	root.AddCommand(&cobra.Command{
		Use:   "apply",
		Short: "Push the routes, verify them, roll back on failure (what routepush does without a subcommand)",
		Example: `  routepush apply -i hosts.yaml
  routepush apply -i hosts.yaml --persist --prune     # keep for the next boot; delete routes of nodes that left
  routepush apply -i hosts.yaml --adopt               # take over the Ansible playbook's routes`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          run,
	}, &cobra.Command{
		Use:   "check",
		Short: "Show what apply would change on each node; change nothing (routepush --check)",
		Long: `Show what apply would change on each node, as a diff grouped by node, and
change nothing. Exit codes as Terraform's plan -detailed-exitcode: 0 every
node in sync, 2 changes pending, 1 error (or apply would refuse a node).`,
		Example: `  routepush check -i hosts.yaml
  routepush check -i hosts.yaml --persist         # also the routes files and boot units
  routepush check --kubeconfig admin.conf -o json # for scripts: docs/report.schema.json`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := cmd.Flags().Set("check", "true"); err != nil {
				return err
			}
			return run(cmd, args)
		},
	}, &cobra.Command{
		Use:   "plan",
		Short: "Print the routes each node should have, without connecting to any",
		Example: `  routepush plan -i hosts.yaml
  routepush plan --kubeconfig admin.conf -l node-role.kubernetes.io/worker=`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := loadOptions(cmd, v)
			if err != nil {
				return err
			}
			return runPlan(ctx, streams, o)
		},
	}, &cobra.Command{
		Use:   "version",
		Short: "Print routepush's version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(streams.Out, "routepush", version())
		},
	})
}

// runPlan prints every node's planned routes, as `ip route replace` would
// be given them, from the node table alone.
func runPlan(ctx context.Context, streams Streams, o *options) error {
	log := newLogger(streams, o)
	nodes, _, err := loadNodes(ctx, o, log)
	if err != nil {
		return err
	}
	plan := orchestrator.NewPlanWith(nodes, orchestrator.PlanOptions{
		Protocol: route.Protocol(o.protocol),
		Metric:   o.metric,
		Table:    o.table,
	})
	for i := range nodes {
		h := plan.Host(i)
		fmt.Fprintf(streams.Out, "%s: %d routes\n", nodes[i].Name, h.Len())
		for k := range h.Len() {
			fmt.Fprintf(streams.Out, "  %s\n", h.Route(k).Spec())
		}
	}
	return nil
}

// version is the module version and VCS revision the binary was built
// from, as go build recorded them.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := info.Main.Version
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			v += " " + s.Value
		case "vcs.modified":
			if s.Value == "true" {
				v += " (modified)"
			}
		}
	}
	return v
}

// nodeLimit reads --limit as Ansible does, in part: comma-separated
// patterns of node names (shell globs), a leading '!' excluding. A node is
// in when it matches some pattern without '!' (or there is none) and no
// pattern with it.
func nodeLimit(spec string, names []string) (func(string) bool, error) {
	if spec == "" {
		return nil, nil
	}
	var in, out []string
	for _, p := range strings.Split(spec, ",") {
		p = strings.TrimSpace(p)
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(p, "!")
		if _, err := path.Match(p, ""); err != nil || p == "" {
			return nil, fmt.Errorf("--limit %q: bad pattern %q", spec, p)
		}
		if neg {
			out = append(out, p)
		} else {
			in = append(in, p)
		}
	}
	matches := func(ps []string, name string) bool {
		for _, p := range ps {
			if ok, _ := path.Match(p, name); ok {
				return true
			}
		}
		return false
	}
	limit := func(name string) bool {
		return (len(in) == 0 || matches(in, name)) && !matches(out, name)
	}
	for _, n := range names {
		if limit(n) {
			return limit, nil
		}
	}
	return nil, fmt.Errorf("--limit %q matches no node", spec)
}
