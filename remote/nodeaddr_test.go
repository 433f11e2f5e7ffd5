package remote

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/routepush/routepush/host"
	"golang.org/x/crypto/ssh"
)

// An address only a Node object gives is connected to only when
// known_hosts knows the node by name, or the operator trusts such
// addresses; a key known under the address alone is refused before any
// connection.
func TestNodeObjectAddressNeedsKeyUnderName(t *testing.T) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	line := func(host string) string {
		return host + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key))) + "\n"
	}
	dir := t.TempDir()
	byAddr := filepath.Join(dir, "by-address")
	byName := filepath.Join(dir, "by-name")
	// Port 1 on loopback: a connection attempt fails at once, refused.
	if err := os.WriteFile(byAddr, []byte(line("[127.0.0.1]:1")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(byName, []byte(line("[127.0.0.1]:1")+line("[w1]:1")), 0o600); err != nil {
		t.Fatal(err)
	}
	target := Target{Name: "w1", Fallback: "127.0.0.1", FallbackFromAPI: true, Port: 1, User: "root"}
	dial := func(cfg Config, t2 Target) error {
		d, err := NewDialer(cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = d.Dial(context.Background(), t2)
		return err
	}
	var unvouched *UnvouchedAddressError
	var unreachable *host.UnreachableError

	err = dial(Config{KnownHostsFile: byAddr}, target)
	if !errors.As(err, &unvouched) || !strings.Contains(err.Error(), "w1: not connecting to 127.0.0.1:1") || !strings.Contains(err.Error(), "--trust-node-addresses") {
		t.Errorf("known by address only: %v, want an UnvouchedAddressError naming w1", err)
	}
	err = dial(Config{KnownHostsFile: byAddr, AcceptNewHostKeys: true}, target)
	if !errors.As(err, &unvouched) {
		t.Errorf("accept-new does not vouch for an address: %v", err)
	}
	// Each of these gets as far as connecting (refused: nothing listens).
	for name, c := range map[string]struct {
		cfg Config
		t   Target
	}{
		"known by name":        {Config{KnownHostsFile: byName}, target},
		"trust-node-addresses": {Config{KnownHostsFile: byAddr, TrustNodeAddresses: true}, target},
		"inventory address":    {Config{KnownHostsFile: byAddr}, Target{Name: "w1", Address: "127.0.0.1", Fallback: "127.0.0.1", FallbackFromAPI: true, Port: 1, User: "root"}},
		"inventory source":     {Config{KnownHostsFile: byAddr}, Target{Name: "w1", Fallback: "127.0.0.1", Port: 1, User: "root"}},
	} {
		if err := dial(c.cfg, c.t); !errors.As(err, &unreachable) {
			t.Errorf("%s: %v, want a connection attempt", name, err)
		}
	}
}
