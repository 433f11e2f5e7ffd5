package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/routepush/routepush/inventory"
	"github.com/routepush/routepush/orchestrator"
)

// rollbackFlags are the settings of rollback: which nodes, how to reach
// them, and which run to undo.
type rollbackFlags struct {
	baseFlags
	source sourceFlags
	reach  reachFlags
	table  tableFlag
	run    string
	force  bool
}

func newRollbackCommand(d deps) *cobra.Command {
	f := &rollbackFlags{}
	cmd := &cobra.Command{
		Use:   "rollback [--run ID]",
		Short: "Restore every node from the record a run left on it",
		Long: `rollback undoes a run from what each node keeps of it in
/var/lib/routepush/runs: the lines that restore the table it had before the
run. It needs nothing from the bastion that started the run, only the same
node table and keys. It finishes a run that was killed, lost its bastion,
or was interrupted twice, and releases the locks that run left behind.
Without --run each node names the newest run of its own records that may
have changed it and was not undone; when the nodes name different runs,
nothing is undone and --run must say which.

It leaves a node alone, naming why, when its table changed since the run
changed it (someone else's change would be undone too), when a later run
changed it and is not undone, or when the run's lock is held by a process
that may still be running: a live process on this host always, a run on
another host until --force says it is gone.`,
		Example: `  routepush rollback --inventory hosts.yaml
  routepush rollback --inventory hosts.yaml --run 20261126T223050.123Z-1a2b3c`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          func(cmd *cobra.Command, _ []string) error { return runRollback(cmd, d, f) },
	}
	fs := cmd.Flags()
	f.baseFlags.add(fs)
	f.source.add(fs)
	f.reach.add(fs)
	f.table.add(fs)
	add(fs, fs.StringVarP, &f.run, "run", "", "", "the run to undo (default: the newest one not rolled back, when every node names the same)", flagOnly)
	add(fs, fs.BoolVarP, &f.force, "force", "", false, "undo nodes changed since the run, runs older than a later one, and take over a lock held from another host", flagOnly)
	return cmd
}

func (f *rollbackFlags) load(cmd *cobra.Command) error {
	if err := loadSettings(cmd); err != nil {
		return err
	}
	if err := f.table.resolve(); err != nil {
		return err
	}
	if err := f.source.check(); err != nil {
		return err
	}
	if err := f.reach.resolve(cmd.Flags()); err != nil {
		return err
	}
	if err := f.baseFlags.check(); err != nil {
		return err
	}
	if f.run != "" && !orchestrator.ValidRunID(f.run) {
		return fmt.Errorf("--run %q is not a run id (like 20261126T223050.123Z-1a2b3c)", f.run)
	}
	return nil
}

func runRollback(cmd *cobra.Command, d deps, f *rollbackFlags) error {
	if err := f.load(cmd); err != nil {
		return err
	}
	ctx, log := cmd.Context(), newLogger(d.streams, &f.baseFlags)
	nodes, _, _, err := loadNodes(ctx, &f.source, log)
	if err != nil {
		return err
	}
	dialer, err := newDialer(&f.reach, &f.table, log, true, plannedRoutes(nodes)) // restoring sends its own batches
	if err != nil {
		return err
	}
	defer dialer.Close()
	connect := func(ctx context.Context, n *inventory.Node) (orchestrator.RestoreHost, error) {
		c, err := dialer.Dial(ctx, target(n, &f.reach))
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	rep, err := orchestrator.Restore(ctx, nodes, connect, orchestrator.RestoreOptions{
		RunID:        f.run,
		Holder:       newHolder(),
		Concurrency:  f.reach.concurrency,
		Logger:       log,
		ProcessAlive: processAlive,
		Force:        f.force,
	})
	if err != nil {
		return err
	}
	rep.WriteSummary(d.streams.Out)
	if rep.Failed() {
		return &exitError{code: ExitError, err: errors.Join(rep.Errors()...)}
	}
	return nil
}
