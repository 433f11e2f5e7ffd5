package remote

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
)

// fromSSH asks OpenSSH. ssh -G prints every option, defaults included, so
// values equal to its answer without any configuration count as unset:
// routepush's own defaults and the inventory come before them.
func (c *SSHConfig) fromSSH(ctx context.Context, alias string) (HostConfig, error) {
	c.defaultsOnce.Do(func() {
		const none = "routepush-defaults.invalid"
		kv, err := c.runG(ctx, "/dev/null", none)
		if err == nil {
			c.defaults, err = c.hostConfig(none, kv, false)
		}
		c.defaultsErr = err
	})
	if c.defaultsErr != nil {
		return HostConfig{}, c.defaultsErr
	}
	kv, err := c.runG(ctx, c.explicit, alias)
	if err != nil {
		return HostConfig{}, err
	}
	hc, err := c.hostConfig(alias, kv, false)
	if err != nil {
		return HostConfig{}, err
	}
	d := &c.defaults
	if hc.HostName == alias {
		hc.HostName = ""
	}
	if hc.User == d.User {
		hc.User = ""
	}
	if hc.Port == d.Port {
		hc.Port = 0
	}
	if slices.Equal(hc.IdentityFiles, d.IdentityFiles) {
		hc.IdentityFiles = nil
	}
	if slices.Equal(hc.KnownHostsFiles, d.KnownHostsFiles) {
		hc.KnownHostsFiles = nil
	}
	if hc.StrictHostKeyChecking == d.StrictHostKeyChecking {
		hc.StrictHostKeyChecking = ""
	}
	return hc, nil
}

// runG runs `ssh -G [-F file] alias` and returns its keyword/value lines.
// The alias is a validated node name or host; it is an argument, never
// shell text.
func (c *SSHConfig) runG(ctx context.Context, file, alias string) (map[string][]string, error) {
	args := []string{"-G"}
	if file != "" {
		args = append(args, "-F", file)
	}
	args = append(args, "--", alias)
	cmd := exec.CommandContext(ctx, c.sshPath, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("ssh -G %s: %w: %s", alias, err, strings.TrimSpace(stderr.String()))
	}
	kv := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		kv[k] = append(kv[k], v)
	}
	// ssh -G prints these expanded and in its own words; map them to the
	// config file's.
	if v, ok := kv["stricthostkeychecking"]; ok {
		switch v[0] {
		case "true":
			kv["stricthostkeychecking"] = []string{"yes"}
		case "false":
			kv["stricthostkeychecking"] = []string{"no"}
		}
	}
	if v, ok := kv["userknownhostsfile"]; ok {
		kv["userknownhostsfile"] = strings.Fields(strings.Join(v, " "))
	}
	return kv, nil
}
