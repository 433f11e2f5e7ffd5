package remote

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/routepush/routepush/internal/homedir"
	"github.com/routepush/routepush/internal/proxyjump"
)

// endpoint is one SSH server with everything needed to log in, resolved
// from the target, ssh_config and Config.
type endpoint struct {
	alias      string // what ssh_config was asked about
	host       string
	port       int
	user       string
	identities []identityRef
	// defaultIdentities: nothing named a key for it (identityRefs gave
	// OpenSSH's defaults).
	defaultIdentities bool
	knownHosts        []string
	policy            hostKeyPolicy
	hashNew           bool // HashKnownHosts: write new lines hashed
	// keyName, when set, is the name whose known_hosts keys the host must
	// offer, whatever its address: an address only a Node object gives.
	keyName string
	timeout time.Duration
	jump    []proxyjump.Hop
	// aliveInterval and aliveCount: keepalives (see keepalive).
	aliveInterval time.Duration
	aliveCount    int
}

type identityRef struct {
	path     string
	explicit bool // named by the inventory or a flag: it must exist
	// borrowed: a node's key offered to its jump host (jump.go): one
	// that cannot be loaded is not offered, and the node's own login
	// says why.
	borrowed bool
}

func (e *endpoint) addr() string { return net.JoinHostPort(e.host, strconv.Itoa(e.port)) }

// keyAddr is the host:port whose known_hosts keys the host must offer: its
// address, or with keyName the node's name.
func (e *endpoint) keyAddr() string {
	if e.keyName != "" {
		return net.JoinHostPort(e.keyName, strconv.Itoa(e.port))
	}
	return e.addr()
}

func (e *endpoint) String() string { return e.user + "@" + e.addr() }

// endpoint resolves a target. Precedence is OpenSSH users': the command
// line, then the inventory, then ssh_config, then defaults. isHop: the
// target is a jump host, whose own ProxyJump is not followed.
func (d *Dialer) endpoint(ctx context.Context, t Target, isHop bool) (*endpoint, error) {
	alias := t.Address
	if alias == "" {
		alias = t.Name
	}
	hc, err := d.cfg.SSHConfig.Host(ctx, alias)
	if err != nil {
		return nil, err
	}
	e := &endpoint{alias: alias, host: t.Address, port: t.Port, user: t.User}
	d.locate(e, t, hc, isHop)
	for _, u := range []string{e.user, hc.User, d.cfg.User, d.localUser} {
		if e.user == "" {
			e.user = u
		}
	}
	if e.user == "" {
		return nil, fmt.Errorf("no SSH user")
	}
	e.identities, e.defaultIdentities = d.identityRefs(t, hc)
	e.knownHosts = d.knownHostsFiles(hc)
	if e.policy, err = d.hostKeyPolicy(alias, hc.StrictHostKeyChecking); err != nil {
		return nil, err
	}
	e.hashNew = hc.HashKnownHosts
	e.timeout = d.cfg.ConnectTimeout
	if e.timeout <= 0 {
		e.timeout = hc.ConnectTimeout
	}
	if e.timeout <= 0 {
		e.timeout = 10 * time.Second
	}
	e.aliveInterval, e.aliveCount = d.aliveSettings(hc)
	if isHop {
		return e, nil
	}
	if e.jump, err = d.jumpHops(t, hc, alias); err != nil {
		return nil, err
	}
	return e, nil
}

// locate sets where the endpoint is: its host (ssh_config's HostName, the
// target's address, its fallback, else the alias) and port.
func (d *Dialer) locate(e *endpoint, t Target, hc HostConfig, isHop bool) {
	switch {
	case hc.HostName != "":
		e.host = hc.HostName
	case e.host == "" && t.Fallback != "":
		e.host = t.Fallback
		if t.FallbackFromAPI && !d.cfg.TrustNodeAddresses && !isHop {
			e.keyName = t.Name
		}
	case e.host == "":
		e.host = e.alias
	}
	if e.port == 0 {
		e.port = hc.Port
	}
	if e.port == 0 {
		e.port = 22
	}
}

// identityRefs are the key files to offer, in OpenSSH's order: the
// target's, the command line's, ssh_config's, else OpenSSH's defaults.
func (d *Dialer) identityRefs(t Target, hc HostConfig) (refs []identityRef, defaults bool) {
	if t.IdentityFile != "" {
		refs = append(refs, identityRef{path: homedir.Expand(t.IdentityFile), explicit: true})
	}
	for _, f := range d.cfg.IdentityFiles {
		refs = append(refs, identityRef{path: homedir.Expand(f), explicit: true})
	}
	for _, f := range hc.IdentityFiles {
		refs = append(refs, identityRef{path: f, explicit: false})
	}
	if len(refs) == 0 {
		for _, name := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
			refs = append(refs, identityRef{path: homedir.Expand("~/.ssh/" + name), explicit: false})
		}
		return refs, true
	}
	return refs, false
}

// knownHostsFiles are the user's known_hosts files: the command line's,
// else ssh_config's, else ~/.ssh/known_hosts.
func (d *Dialer) knownHostsFiles(hc HostConfig) []string {
	switch {
	case d.cfg.KnownHostsFile != "":
		return []string{homedir.Expand(d.cfg.KnownHostsFile)}
	case len(hc.KnownHostsFiles) > 0:
		return hc.KnownHostsFiles
	}
	return []string{homedir.Expand("~/.ssh/known_hosts")}
}

// jumpHops are a node's jump hosts: --jump's, else the target's, else
// ssh_config's ProxyJump. A ProxyCommand is refused.
func (d *Dialer) jumpHops(t Target, hc HostConfig, alias string) ([]proxyjump.Hop, error) {
	jump := d.cfg.Jump
	if jump == "" {
		jump = t.Jump
	}
	if jump == "" {
		if hc.ProxyCommand != "" {
			return nil, fmt.Errorf("ssh config for %s: %w", alias, errProxyCommand)
		}
		jump = hc.ProxyJump
	}
	return proxyjump.Parse(jump)
}
