package app

import (
	"context"
	"errors"
	"log/slog"
	"os/user"

	"github.com/routepush/routepush/inventory"
	"github.com/routepush/routepush/orchestrator"
	"github.com/routepush/routepush/remote"
	"github.com/routepush/routepush/route"
)

// runApply is routepush's main job: load, plan, then check or apply.
func runApply(ctx context.Context, streams Streams, o *options, log *slog.Logger) error {
	nodes, err := inventory.Load(o.inventory)
	if err != nil {
		return err
	}
	dialer, err := remote.NewDialer(remote.Config{
		KnownHostsFile: o.knownHosts,
		IdentityFiles:  o.identities,
		ConnectTimeout: o.connectTimeout,
		CommandTimeout: o.commandTimeout,
	})
	if err != nil {
		return err
	}
	plan := orchestrator.NewPlan(nodes, route.Protocol(o.protocol))
	connect := func(ctx context.Context, n *inventory.Node) (orchestrator.Host, error) {
		c, err := dialer.Dial(ctx, target(n, o))
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	rep := orchestrator.Run(ctx, plan, connect, orchestrator.Options{
		Concurrency: o.concurrency,
		Check:       o.check,
		Rollback:    o.rollback,
		Logger:      log,
	})
	if o.check {
		rep.WriteDiff(streams.Out)
	}
	rep.WriteSummary(streams.Out)
	if rep.Failed() {
		err := errors.Join(rep.Errors()...)
		if rep.Err != nil && ctx.Err() != nil {
			return &exitError{code: ExitInterrupted, err: err}
		}
		return &exitError{code: ExitError, err: err}
	}
	if o.check && rep.Changes() {
		return &exitError{code: ExitChanges}
	}
	return nil
}

// target resolves how to log in to a node: --user on the command line, then
// the inventory (node, then its defaults), then config/env, then the local
// user name, as ssh would.
func target(n *inventory.Node, o *options) remote.Target {
	t := remote.Target{Name: n.Name, Host: n.Address, Port: n.SSH.Port, User: n.SSH.User, IdentityFile: n.SSH.IdentityFile}
	if o.userFromFlag || t.User == "" {
		t.User = o.user
	}
	if t.User == "" {
		if u, err := user.Current(); err == nil {
			t.User = u.Username
		}
	}
	return t
}
