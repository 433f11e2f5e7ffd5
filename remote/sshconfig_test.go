package remote

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/routepush/routepush/internal/proxyjump"
)

func writeSSHConfig(t *testing.T, extra string) string {
	t.Helper()
	dir := t.TempDir()
	inc := filepath.Join(dir, "workers.conf")
	if err := os.WriteFile(inc, []byte("Host worker-1\n  HostName 198.18.0.11\n  Port 2200\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := `# an operator's ~/.ssh/config
Include ` + inc + `
Host bastion
  HostName 198.19.0.2
  User jumper
Host worker-* !worker-9
  User admin
  Port 2222
  IdentityFile ~/.ssh/%n.key
  IdentityFile /keys/shared
  ProxyJump bastion
  UserKnownHostsFile ` + dir + `/known_%h
  StrictHostKeyChecking accept-new
  ConnectTimeout 3
  ServerAliveInterval 7
  ServerAliveCountMax 5
Host *
  HashKnownHosts yes
` + extra
	path := filepath.Join(dir, "config")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// The parser and OpenSSH's own ssh -G must agree on what routepush uses.
func TestSSHConfigHost(t *testing.T) {
	home, _ := os.UserHomeDir()
	check := func(t *testing.T, c *SSHConfig) {
		t.Helper()
		dir := filepath.Dir(c.Files()[0])
		got, err := c.Host(context.Background(), "worker-1")
		if err != nil {
			t.Fatal(err)
		}
		want := HostConfig{
			HostName:              "198.18.0.11", // from the Include, first value wins
			User:                  "admin",
			Port:                  2200,
			IdentityFiles:         []string{home + "/.ssh/worker-1.key", "/keys/shared"},
			ProxyJump:             "bastion",
			KnownHostsFiles:       []string{dir + "/known_198.18.0.11"},
			StrictHostKeyChecking: "accept-new",
			ConnectTimeout:        3 * time.Second,
			HashKnownHosts:        true,
			ServerAliveInterval:   7 * time.Second,
			ServerAliveCountMax:   5,
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("worker-1:\n got %+v\nwant %+v", got, want)
		}
		got, _ = c.Host(context.Background(), "worker-9")
		if got.User != "" || got.ProxyJump != "" || got.Port != 0 {
			t.Errorf("worker-9 (negated) = %+v, want nothing from the worker-* block", got)
		}
	}
	t.Run("parser", func(t *testing.T) {
		c, err := LoadSSHConfig(writeSSHConfig(t, ""))
		if err != nil || c.Fallback != "" {
			t.Fatalf("LoadSSHConfig = %v, fallback %q", err, c.Fallback)
		}
		check(t, c)
	})
	t.Run("ssh -G", func(t *testing.T) {
		if _, err := exec.LookPath("ssh"); err != nil {
			t.Fatal("OpenSSH's ssh is needed: scripts/install-deps.sh installs openssh-client")
		}
		// RHEL and Fedora ship "Match final"; the parser refuses it.
		c, err := LoadSSHConfig(writeSSHConfig(t, "Match final\n  ServerAliveInterval 30\n"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(c.Fallback, "line 19") || !strings.Contains(c.Fallback, "final") {
			t.Errorf("Fallback = %q, want the file, line 19 and the criterion", c.Fallback)
		}
		check(t, c)
	})
}

func TestSSHConfigProxyCommandRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(path, []byte("Host w\n  ProxyCommand nc %h %p\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := LoadSSHConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDialer(Config{SSHConfig: c})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Dial(context.Background(), Target{Name: "w", Fallback: "198.18.0.10"}); err == nil || !strings.Contains(err.Error(), "w: ssh config for w: ProxyCommand is not supported; use ProxyJump") {
		t.Errorf("Dial = %v, want ProxyCommand refused naming the node", err)
	}
}

// The command line beats the inventory, which beats ssh_config, which
// beats routepush's config and the defaults.
func TestEndpointPrecedence(t *testing.T) {
	c, err := LoadSSHConfig(writeSSHConfig(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDialer(Config{SSHConfig: c, User: "cfg", IdentityFiles: nil})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	e, err := d.endpoint(ctx, Target{Name: "worker-1", Fallback: "198.18.0.99"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if e.addr() != "198.18.0.11:2200" || e.user != "admin" || len(e.jump) != 1 || e.jump[0].Host != "bastion" || e.policy != acceptNewKeys || !e.hashNew {
		t.Errorf("from ssh_config: %+v", e)
	}
	e, _ = d.endpoint(ctx, Target{Name: "worker-1", Port: 22, User: "root", Jump: "none"}, false)
	if e.addr() != "198.18.0.11:22" || e.user != "root" || len(e.jump) != 0 {
		t.Errorf("inventory over ssh_config: %+v", e)
	}
	e, _ = d.endpoint(ctx, Target{Name: "other", Fallback: "198.18.0.99"}, false)
	if e.addr() != "198.18.0.99:22" || e.user != "cfg" || e.timeout != 10*time.Second || e.policy != refuseUnknownKeys {
		t.Errorf("no ssh_config block: %+v", e)
	}
	d.cfg.Jump, d.cfg.AcceptNewHostKeys = "root@198.19.0.3:2022", true
	e, _ = d.endpoint(ctx, Target{Name: "worker-5"}, false)
	if len(e.jump) != 1 || e.jump[0] != (proxyjump.Hop{User: "root", Host: "198.19.0.3", Port: 2022}) || e.policy != acceptNewKeys {
		t.Errorf("--jump over ssh_config: %+v", e)
	}
}
