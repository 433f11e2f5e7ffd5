package remote

import (
	"context"
	"fmt"
	"net"

	"golang.org/x/crypto/ssh"

	"github.com/routepush/routepush/internal/homedir"
	"github.com/routepush/routepush/internal/proxyjump"
)

// jumpChain is one authenticated connection through a chain of jump hosts,
// shared by every node behind it: one login on each jump host per run, and
// each node a direct-tcpip channel on the last one.
type jumpChain struct {
	clients []*ssh.Client // every hop's client, first hop first
}

// last is the client nodes are dialed through.
func (j *jumpChain) last() *ssh.Client { return j.clients[len(j.clients)-1] }

func (j *jumpChain) close() {
	for i := len(j.clients) - 1; i >= 0; i-- {
		j.clients[i].Close()
	}
}

// jump returns the shared connection for a chain of hops, opening it on
// first use. A chain that failed is not retried in the same run: every node
// behind it reports the same error instead of hammering the jump host.
//
// nodeKey is the key file the inventory names for the node behind the
// chain, if any. A hop for which neither the command line nor ssh_config
// names a key is offered it after the agent's and OpenSSH's defaults
// (OpenSSH's -J does not, and users who give their key in the inventory
// alone trip over it); nodes whose keys differ then get a chain each.
func (d *Dialer) jump(ctx context.Context, hops []proxyjump.Hop, nodeKey string) (*jumpChain, error) {
	// Resolved first (ssh_config and the command line: no connection),
	// so that the key is in the chain's name only where it is offered.
	eps := make([]*endpoint, len(hops))
	borrow := ""
	for i, h := range hops {
		ep, err := d.endpoint(ctx, Target{Name: h.Host, User: h.User, Port: h.Port}, true)
		if err != nil {
			return nil, fmt.Errorf("jump host %s: %w", h, err)
		}
		if nodeKey != "" && ep.defaultIdentities {
			borrow = homedir.Expand(nodeKey)
			ep.identities = append(ep.identities, identityRef{path: borrow, borrowed: true})
		}
		eps[i] = ep
	}
	return d.jumps.get(fmt.Sprint(hops, " ", borrow), func() (*jumpChain, error) {
		// The chain outlives the first node's context: use one of its own,
		// bounded by the connect timeout of each hop.
		ctx := context.WithoutCancel(ctx)
		j := &jumpChain{}
		var via *ssh.Client
		for _, ep := range eps {
			if ep.identities[len(ep.identities)-1].borrowed {
				d.log.Info("offering the node's key to its jump host, which no --identity or ssh_config names a key for", "jump", ep.String(), "identity", borrow)
			}
			conn, chans, reqs, err := d.handshake(ctx, via, ep, "jump host "+ep.String(), nil)
			if err != nil {
				j.close()
				return nil, err
			}
			c := ssh.NewClient(conn, chans, reqs) // Dial, for the next hop
			j.clients = append(j.clients, c)
			via = c
		}
		return j, nil
	})
}

// dialVia opens a TCP connection to addr, directly or through a jump
// chain's last hop.
func dialVia(ctx context.Context, via *ssh.Client, addr string) (net.Conn, error) {
	if via == nil {
		var nd net.Dialer
		return nd.DialContext(ctx, "tcp", addr)
	}
	return via.DialContext(ctx, "tcp", addr)
}

// JumpHosts returns the host name or address of each jump host a target is
// reached through, as --jump and ssh_config resolve them (HostName
// included), so the plan can be checked against them before any
// connection.
func (d *Dialer) JumpHosts(ctx context.Context, t Target) ([]string, error) {
	e, err := d.endpoint(ctx, t, false)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.Name, err)
	}
	hosts := make([]string, 0, len(e.jump))
	for _, h := range e.jump {
		ep, err := d.endpoint(ctx, Target{Name: h.Host, User: h.User, Port: h.Port}, true)
		if err != nil {
			return nil, fmt.Errorf("%s: jump host %s: %w", t.Name, h, err)
		}
		hosts = append(hosts, ep.host)
	}
	return hosts, nil
}
