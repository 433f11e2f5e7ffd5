package app

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/routepush/routepush/inventory"
	"github.com/routepush/routepush/orchestrator"
	"github.com/routepush/routepush/remote"
)

// applyFlags are the settings of apply (and of routepush without a verb);
// check reads those of checkFlags alone.
type applyFlags struct {
	checkFlags
	check         bool
	markAvailable bool
	rollback      string
	rollbackMode  orchestrator.RollbackMode
	canary        int
	waitLock      time.Duration
	keepRuns      int
	maxIdle       int
	carried       map[string]bool // carriedFlags of the parsed command
	checkVerb     bool            // the check verb: checkFlags alone, and check set
}

// checkFlags are the settings of check: apply's, less those that only
// matter once a node is changed.
type checkFlags struct {
	baseFlags
	source         sourceFlags
	reach          reachFlags
	table          tableFlag
	routes         routeFlags
	limit          string
	maxUnreachable int
	prune, adopt   bool
	persist        bool
	rails          inventory.Rails
	runningOn      string // watch --running-on: the node this pod runs on
	output         string
	preflight      string
	preflightMode  orchestrator.PreflightMode
	probe          string // --probe: "" none, a number of targets, or all
	probeK         int    // probe, parsed: 0 none, orchestrator.ProbeAll
	probeVerb      bool   // the probe verb: check, probing, judged by the probe
	profile        string
	profileOutput  string
}

func (f *checkFlags) add(fs *pflag.FlagSet) {
	f.baseFlags.add(fs)
	f.source.add(fs)
	f.reach.add(fs)
	f.table.add(fs)
	f.routes.add(fs)
	add(fs, fs.StringVarP, &f.limit, "limit", "", "", "act only on these nodes, as Ansible's --limit: name patterns (globs) separated by ',' or ':', '!' excludes; with an Ansible inventory also its groups, '&' (intersection) and ~regex; the others stay destinations")
	add(fs, fs.IntVarP, &f.maxUnreachable, "max-unreachable", "", 0, "nodes that may be unreachable at connect time and be left out; past it nothing changes")
	add(fs, fs.BoolVarP, &f.prune, "prune", "", false, "delete routepush's routes that are no longer planned (nodes that left, CIDRs that moved)")
	add(fs, fs.BoolVarP, &f.adopt, "adopt", "", false, "replace other owners' routes to planned destinations (e.g. the Ansible playbook's) and delete self routes, instead of refusing the node")
	add(fs, fs.BoolVarP, &f.persist, "persist", "", false, "after a node verifies, keep its routes for the next boot: /etc/routepush/routes and routepush-routes.service, enabled where systemd runs; --check reports where they differ")
	add(fs, fs.IntVarP, &f.rails.MinPrefix[0], "min-prefix-v4", "", inventory.DefaultRails().MinPrefix[0], "refuse IPv4 pod CIDRs wider than this prefix length")
	add(fs, fs.IntVarP, &f.rails.MinPrefix[1], "min-prefix-v6", "", inventory.DefaultRails().MinPrefix[1], "refuse IPv6 pod CIDRs wider than this prefix length")
	add(fs, fs.StringVarP, &f.preflight, "preflight", "", "report", "what pods need beyond routes (forwarding, rp_filter, the FORWARD chains' policy, an address in the node's pod CIDR), read in the same sessions: report (each problem with its fix), strict (refuse those nodes before any change) or off")
	add(fs, fs.StringVarP, &f.probe, "probe", "", "", "once every node has its routes, each node pings K others' pod addresses from its own (every node is pinged by K); --probe alone is K=3, --probe all every pair; a pair that does not answer fails the run (exit 1) and is rolled back nowhere", flagOnly)
	fs.Lookup("probe").NoOptDefVal = strconv.Itoa(defaultProbeTargets)
	add(fs, fs.StringVarP, &f.output, "output", "o", "text", "report format on stdout: text, or json (docs/report.schema.json; nothing else is printed on stdout)")
	add(fs, fs.StringVarP, &f.profile, "profile", "", "none", "profile to write, as kubectl's: "+strings.Join(profiles, "|")+" (heap: at the live heap's peak)", flagOnly)
	add(fs, fs.StringVarP, &f.profileOutput, "profile-output", "", "profile.pprof", "file the profile is written to", flagOnly)
}

// add registers apply's flags on fs, or for the check verb check's alone.
func (f *applyFlags) add(fs *pflag.FlagSet, checkVerb bool) {
	f.checkFlags.add(fs)
	f.checkVerb, f.check = checkVerb, checkVerb
	if checkVerb {
		return
	}
	add(fs, fs.BoolVarP, &f.check, "check", "", false, "show what would change on each node; change nothing (exit 2 if anything would)")
	add(fs, fs.BoolVarP, &f.markAvailable, "mark-network-available", "", false, "set NetworkUnavailable=False (reason RouteCreated) on every node whose routes verified")
	add(fs, fs.StringVarP, &f.rollback, "rollback", "", "all", "on failure restore: all changed nodes | host (only failed ones) | none")
	add(fs, fs.IntVarP, &f.canary, "canary", "", 0, "apply and verify this many nodes first, the rest only if they succeed (like Ansible's serial)")
	add(fs, fs.DurationVarP, &f.waitLock, "wait-lock", "", 0, "wait this long for nodes another run has locked, instead of failing at once")
	add(fs, fs.IntVarP, &f.keepRuns, "keep-runs", "", 10, "run records each node keeps in /var/lib/routepush/runs")
	add(fs, fs.IntVarP, &f.maxIdle, "max-idle-connections", "", orchestrator.DefaultMaxIdleConnections, "nodes that wait for others (read, not yet applied; verified, run not over) with their connection open, about 95 KB of memory each, a fifth of them with their SFTP session too (20 KB more); the rest connect again when their turn comes (0: none)")
}

// load resolves the settings of cmd (whose flags f registered) and checks
// them, each naming its flag, before anything is read or contacted.
func (f *applyFlags) load(cmd *cobra.Command) (err error) {
	if err := loadSettings(cmd); err != nil {
		return err
	}
	f.carried = carriedFlags(cmd.Flags())
	if err := f.table.resolve(); err != nil {
		return err
	}
	if err := f.routes.check(); err != nil {
		return err
	}
	if !f.checkVerb {
		if f.rollbackMode, err = orchestrator.ParseRollbackMode(f.rollback); err != nil {
			return err
		}
		if f.maxIdle < 0 {
			return fmt.Errorf("--max-idle-connections must be 0 or more, got %d", f.maxIdle)
		}
	}
	if f.preflightMode, err = orchestrator.ParsePreflightMode(f.preflight); err != nil {
		return err
	}
	if f.probeK, err = parseProbe(f.probe); err != nil {
		return err
	}
	if f.probeK != 0 && f.preflightMode == orchestrator.PreflightOff {
		return fmt.Errorf("--probe needs the pod addresses preflight reads: it cannot go with --preflight off")
	}
	if err := f.source.check(); err != nil {
		return err
	}
	if f.source.kube() == nil {
		if err := needsAPI("mark-network-available", f.markAvailable); err != nil {
			return err
		}
	}
	if err := f.reach.resolve(cmd.Flags()); err != nil {
		return err
	}
	switch {
	case f.output != "text" && f.output != "json":
		return fmt.Errorf("--output must be text or json, got %q", f.output)
	case f.rails.MinPrefix[0] < 0 || f.rails.MinPrefix[0] > 32:
		return fmt.Errorf("--min-prefix-v4 must be 0-32, got %d", f.rails.MinPrefix[0])
	case f.rails.MinPrefix[1] < 0 || f.rails.MinPrefix[1] > 128:
		return fmt.Errorf("--min-prefix-v6 must be 0-128, got %d", f.rails.MinPrefix[1])
	}
	return f.baseFlags.check()
}

// defaultProbeTargets is K for --probe without a value.
const defaultProbeTargets = 3

// parseProbe checks a --probe value: "" none, a number of targets per
// node (1 or more), or all.
func parseProbe(s string) (int, error) {
	switch s {
	case "":
		return 0, nil
	case "all":
		return orchestrator.ProbeAll, nil
	}
	k, err := strconv.Atoi(s)
	if err != nil || k < 1 {
		return 0, fmt.Errorf("--probe %q: give the nodes each node pings (1 or more), or all", s)
	}
	return k, nil
}

// probeArgs is cobra.NoArgs, but for the value of a --probe given
// without '=' (`--probe all`, `--probe 5`), which pflag leaves as an
// argument: --probe's value is optional.
func probeArgs(f *applyFlags) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		probe := cmd.Flags().Lookup("probe")
		if len(args) == 1 && probe != nil && probe.Changed && f.probe == probe.NoOptDefVal {
			if _, err := parseProbe(args[0]); err == nil {
				f.probe = args[0]
				return nil
			}
		}
		return cobra.NoArgs(cmd, args)
	}
}

func newApplyCommand(d deps) *cobra.Command {
	f := &applyFlags{}
	cmd := &cobra.Command{
		Use:   "apply",
		Short: "Push the routes, verify them, roll back on failure (what routepush does without a subcommand)",
		Example: `  routepush apply -i hosts.yaml
  routepush apply -i hosts.yaml --persist --prune     # keep for the next boot; delete routes of nodes that left
  routepush apply -i hosts.yaml --adopt               # take over the Ansible playbook's routes
  routepush apply -i hosts.yaml --probe               # then ping pod to pod: each node 3 others`,
		Args:          probeArgs(f),
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          func(cmd *cobra.Command, _ []string) error { return runApply(cmd, d, f) },
	}
	f.add(cmd.Flags(), false)
	return cmd
}

// runApply is apply's and check's job: settings, then the run, profiled
// if --profile asks.
func runApply(cmd *cobra.Command, d deps, f *applyFlags) error {
	if err := f.load(cmd); err != nil {
		return err
	}
	stopProfile, err := startProfile(f.profile, f.profileOutput)
	if err != nil {
		return err
	}
	err = apply(cmd.Context(), d, f, newLogger(d.streams, &f.baseFlags))
	if perr := stopProfile(); perr != nil && err == nil {
		err = fmt.Errorf("failed to write profile %s: %w", f.profileOutput, perr)
	}
	return err
}

// apply is routepush's main job: load, plan, then check or apply, and
// report.
func apply(ctx context.Context, d deps, f *applyFlags, log *slog.Logger) error {
	nodes, cluster, groups, err := loadNodes(ctx, &f.source, log)
	if err != nil {
		return err
	}
	cfg, err := dialerConfig(&f.reach, &f.table, log, f.check, plannedRoutes(nodes))
	if err != nil {
		return err
	}
	cfg.Preflight = f.preflightMode != orchestrator.PreflightOff
	dialer, err := remote.NewDialer(cfg)
	if err != nil {
		return err
	}
	defer dialer.Close()
	if err := checkRails(ctx, &f.checkFlags, nodes, cluster, dialer); err != nil {
		return err
	}
	planOpts := f.routes.planOptions(&f.table)
	planOpts.Prune, planOpts.Adopt = f.prune, f.adopt
	plan := orchestrator.NewPlanWith(nodes, planOpts)
	limit, err := nodeLimit(f.limit, nodeNames(nodes), groups)
	if err != nil {
		return err
	}
	var holder orchestrator.Holder
	if !f.check {
		holder = newHolder()
		d.active.start(holder.RunID, f.carried)
		log.Info("run", "id", holder.RunID)
	}
	var progress orchestrator.Progress
	stopProgress := func() {}
	if f.output != "json" {
		stopProgress = showProgress(d.streams.ErrOut, &progress)
	}
	rep := orchestrator.Run(ctx, plan, hostConnector(dialer, &f.reach), orchestrator.Options{
		Progress:       &progress,
		Concurrency:    f.reach.concurrency,
		Check:          f.check,
		Rollback:       f.rollbackMode,
		Logger:         log,
		Holder:         holder,
		Keep:           f.keepRuns,
		ProcessAlive:   processAlive,
		MaxUnreachable: f.maxUnreachable,
		WaitLock:       f.waitLock,
		Canary:         f.canary,
		Limit:          limit,
		Persist:        f.persist,
		// 0 is the option's default; the flag's 0 keeps none open.
		MaxIdleConnections: cmp.Or(f.maxIdle, -1),
		Preflight:          f.preflightMode,
		Probe:              f.probeK,
	})
	stopProgress()
	return settle(ctx, d.streams, f, rep, holder.RunID, cluster)
}
