package app

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/help-*.golden from the commands' help")

// Each verb's --help, flags included, as testdata/help-<verb>.golden
// holds it: a flag a verb does not read is not listed.
func TestHelp(t *testing.T) {
	for _, verb := range []string{"", "apply", "check", "plan", "probe", "rollback", "watch", "version"} {
		name := "help-" + verb + ".golden"
		if verb == "" {
			name = "help-routepush.golden"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out, code := run(t, strings.Fields(verb+" --help")...)
			if code != ExitOK {
				t.Fatalf("exit %d\n%s", code, out)
			}
			path := filepath.Join("testdata", name)
			if *update {
				if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if out != string(want) {
				t.Errorf("routepush %s --help:\n%s\nwant (go test -run TestHelp -update to accept):\n%s", verb, out, want)
			}
		})
	}
}

// A flag is an error on every verb that does not read it, whatever
// another verb makes of it.
func TestVerbsRejectFlagsTheyDoNotRead(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"rollback", "-i", "x.yaml", "--check"},
		{"rollback", "-i", "x.yaml", "--protocol", "17"},
		{"rollback", "-i", "x.yaml", "--prune"},
		{"rollback", "-i", "x.yaml", "-o", "json"},
		{"check", "-i", "x.yaml", "--check"},
		{"check", "-i", "x.yaml", "--rollback", "none"},
		{"check", "-i", "x.yaml", "--canary", "1"},
		{"check", "-i", "x.yaml", "--mark-network-available"},
		{"plan", "-i", "x.yaml", "--concurrency", "5"},
		{"plan", "-i", "x.yaml", "--persist"},
		{"plan", "-i", "x.yaml", "--user", "root"},
		{"version", "-v"},
		{"--run", "20261126T223050.123Z-1a2b3c"},
		{"apply", "--force"},
	} {
		flagArg := args[len(args)-1]
		if !strings.HasPrefix(flagArg, "-") {
			flagArg = args[len(args)-2]
		}
		want := "unknown flag: " + flagArg
		if !strings.HasPrefix(flagArg, "--") {
			want = "unknown shorthand flag: '" + strings.TrimPrefix(flagArg, "-") + "'"
		}
		out, code := run(t, args...)
		if code != ExitError || !strings.Contains(out, "ERROR: "+want) {
			t.Errorf("routepush %v: exit %d, output %q; want exit 1 and %q", args, code, out, want)
		}
	}
}

// A config file is shared by every verb: a key only other verbs read is
// ignored, not refused, and one no verb reads is refused by all.
func TestConfigKeysOfOtherVerbs(t *testing.T) {
	cfg := writeConfig(t, "inventory: ../../../inventory/testdata/valid-basic.yaml\nconcurrency: 7\nrollback: none\ncanary: 1\n")
	if out, code := run(t, "plan", "--config", cfg); code != ExitOK || !strings.Contains(out, "worker-2: 2 routes") {
		t.Errorf("plan with apply's keys: exit %d\n%s", code, out)
	}
	bad := writeConfig(t, "inventory: hosts.yaml\nforce: true\n")
	for _, verb := range []string{"apply", "check", "plan", "probe", "rollback", "watch"} {
		if out, code := run(t, verb, "--config", bad); code != ExitError || !strings.Contains(out, `unknown key "force"`) {
			t.Errorf("%s with a config key no verb reads: exit %d\n%s", verb, code, out)
		}
	}
}

// Settings are config keys and ROUTEPUSH_* variables unless marked
// flagOnly, so the set of keys is pinned here: a new flag that would take
// effect from the environment or a config file (as --force or --run must
// not: a stray ROUTEPUSH_FORCE in a shell must not take over another
// host's lock) has to be added to this list on purpose.
func TestFlagOnlySettingsIgnoreEnvironment(t *testing.T) {
	root := newRootCommand(deps{})
	want := "accept-new-host-keys adopt allow-unknown-nodes ansible-internal-ip-vars ansible-pod-cidr-vars become canary check chunk-size command-timeout concurrency connect-timeout context debounce identity inventory jump keep-runs known-hosts kubeconfig lease-duration lease-name lease-namespace lease-renew-deadline lease-retry-period limit log-format log-level mark-network-available max-idle-connections max-unreachable metric metrics-addr min-prefix-v4 min-prefix-v6 output persist preflight protocol prune request-timeout resync rollback running-on selector server-alive-count-max server-alive-interval sftp-server ssh-config table trust-node-addresses user wait-lock"
	if got := strings.Join(configKeys(root), " "); got != want {
		t.Errorf("config keys:\n got %s\nwant %s", got, want)
	}
	for name, value := range map[string]string{"force": "true", "run": "20261126T223050.123Z-1a2b3c", "config": "x.yaml", "quiet": "true", "profile": "cpu", "profile-output": "x.pprof"} {
		t.Setenv("ROUTEPUSH_"+strings.ToUpper(strings.ReplaceAll(name, "-", "_")), value)
	}
	for _, c := range root.Commands() {
		if err := c.ParseFlags([]string{"--inventory", "hosts.yaml"}); err != nil || c.Flags().Lookup("inventory") == nil {
			continue // version: no settings
		}
		if err := loadSettings(c); err != nil {
			t.Fatalf("%s: %v", c.Name(), err)
		}
		for _, name := range []string{"force", "run", "config", "quiet", "profile", "profile-output"} {
			if f := c.Flags().Lookup(name); f != nil && f.Value.String() != f.DefValue {
				t.Errorf("%s --%s = %q from ROUTEPUSH_%s; a flag-only setting must come from the command line alone", c.Name(), name, f.Value, strings.ToUpper(name))
			}
		}
	}
}
