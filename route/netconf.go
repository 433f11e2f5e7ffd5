package route

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
)

// RPFilter is an interface's reverse-path filter, in the kernel's values
// (net.ipv4.conf.*.rp_filter): the one that applies to a packet is the
// larger of the interface's and "all"'s.
type RPFilter int

const (
	RPOff    RPFilter = 0
	RPStrict RPFilter = 1 // a packet is dropped unless the route back to its source leaves by the interface it came in on
	RPLoose  RPFilter = 2 // dropped only if its source is unreachable
)

func (f RPFilter) String() string {
	switch f {
	case RPOff:
		return "off"
	case RPStrict:
		return "strict"
	case RPLoose:
		return "loose"
	}
	return fmt.Sprintf("rp_filter %d", int(f))
}

// Netconf is one entry of `ip -json netconf show`: how an interface (or
// "all", or "default" for interfaces yet to come) of one family treats
// packets to forward.
type Netconf struct {
	Family     Family
	Interface  string // as the node names it: shown escaped, never run
	Forwarding bool
	RPFilter   RPFilter // IPv4 only
}

type jsonNetconf struct {
	Family     string `json:"family"`
	Interface  string `json:"interface"`
	Forwarding *bool  `json:"forwarding"`
	RPFilter   string `json:"rp_filter"`
}

// ParseNetconfJSON parses the output of `ip -json netconf show` (one
// family's, or both). An entry without a forwarding setting or with an
// rp_filter iproute2 does not print is refused: preflight must not guess.
func ParseNetconfJSON(data []byte) ([]Netconf, error) {
	var raw []jsonNetconf
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("route: parse ip -json netconf output: %w", err)
	}
	out := make([]Netconf, 0, len(raw))
	for _, r := range raw {
		var n Netconf
		switch r.Family {
		case "inet":
			n.Family = IPv4
		case "inet6":
			n.Family = IPv6
		default:
			continue // mpls and the like: not routepush's
		}
		if r.Interface == "" || r.Forwarding == nil {
			return nil, fmt.Errorf("route: ip -json netconf: an entry without interface or forwarding")
		}
		n.Interface, n.Forwarding = r.Interface, *r.Forwarding
		if n.Family == IPv4 {
			switch r.RPFilter {
			case "off", "":
				n.RPFilter = RPOff
			case "strict":
				n.RPFilter = RPStrict
			case "loose":
				n.RPFilter = RPLoose
			default:
				return nil, fmt.Errorf("route: ip -json netconf: interface rp_filter %q unknown", r.RPFilter)
			}
		}
		out = append(out, n)
	}
	return out, nil
}

// Address is an address an interface holds, with its prefix length, as
// `ip -json address show` prints it.
type Address struct {
	Interface string // shown escaped, never run
	Prefix    netip.Prefix
}

type jsonLink struct {
	Name  string `json:"ifname"`
	Addrs []struct {
		Family    string `json:"family"`
		Local     string `json:"local"`
		PrefixLen int    `json:"prefixlen"`
	} `json:"addr_info"`
}

// ParseAddressesJSON parses the output of `ip -json address show`: every
// inet and inet6 address, by interface. An address that does not parse is
// refused.
func ParseAddressesJSON(data []byte) ([]Address, error) {
	var links []jsonLink
	if err := json.Unmarshal(data, &links); err != nil {
		return nil, fmt.Errorf("route: parse ip -json address output: %w", err)
	}
	var out []Address
	for _, l := range links {
		for _, a := range l.Addrs {
			if a.Family != "inet" && a.Family != "inet6" {
				continue
			}
			addr, err := netip.ParseAddr(a.Local)
			if err != nil {
				return nil, fmt.Errorf("route: ip -json address: %w", err)
			}
			p, err := addr.Prefix(a.PrefixLen)
			if err != nil {
				return nil, fmt.Errorf("route: ip -json address: %s/%d: %w", addr, a.PrefixLen, err)
			}
			out = append(out, Address{Interface: l.Name, Prefix: netip.PrefixFrom(addr, p.Bits())})
		}
	}
	return out, nil
}

// Facts are what a node's read says about how it forwards: the settings
// preflight checks, read beside its tables and never part of their
// digest. Unread says, one line each, what could not be read there and
// why: preflight says so rather than guess.
type Facts struct {
	Netconf   []Netconf
	Addresses []Address
	Forward   []ForwardChain
	Unread    []string
}

// ForwardChain is a netfilter base chain on the forward hook: every
// packet a node routes between two other hosts, its pods' included, goes
// through it, and its policy decides what no rule accepts.
type ForwardChain struct {
	Family Family
	// Tool is what reads and changes it: "nft", or "iptables" where the
	// node has no nft (iptables-legacy's chains).
	Tool string
	// Family of the nft table ("ip", "ip6", "inet"), the table and the
	// chain, as the node names them: shown escaped, never run.
	TableFamily, Table, Chain string
	Drop                      bool // the policy is drop
}

type jsonNft struct {
	Nftables []struct {
		Chain *struct {
			Family string `json:"family"`
			Table  string `json:"table"`
			Name   string `json:"name"`
			Hook   string `json:"hook"`
			Policy string `json:"policy"`
		} `json:"chain"`
	} `json:"nftables"`
}

// ParseNftChainsJSON parses `nft -j list chains`: the base chains on the
// forward hook of the ip, ip6 and inet tables (an inet chain is both
// families'). Chains of other hooks and families are not routing's.
func ParseNftChainsJSON(data []byte) ([]ForwardChain, error) {
	var doc jsonNft
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("route: parse nft -j list chains output: %w", err)
	}
	var out []ForwardChain
	for _, o := range doc.Nftables {
		c := o.Chain
		if c == nil || c.Hook != "forward" {
			continue
		}
		var fams []Family
		switch c.Family {
		case "ip":
			fams = []Family{IPv4}
		case "ip6":
			fams = []Family{IPv6}
		case "inet":
			fams = []Family{IPv4, IPv6}
		default:
			continue
		}
		for _, fam := range fams {
			out = append(out, ForwardChain{Family: fam, Tool: "nft", TableFamily: c.Family, Table: c.Table, Chain: c.Name, Drop: c.Policy == "drop"})
		}
	}
	return out, nil
}

// ParseIptablesPolicy parses `iptables -S FORWARD` (ip6tables' for IPv6):
// its first line is the chain's policy, `-P FORWARD DROP`.
func ParseIptablesPolicy(data []byte, fam Family) ([]ForwardChain, error) {
	first, _, _ := bytes.Cut(data, []byte("\n"))
	f := strings.Fields(string(first))
	if len(f) != 3 || f[0] != "-P" || f[1] != "FORWARD" {
		return nil, fmt.Errorf("route: iptables -S FORWARD: no policy line")
	}
	tool := "iptables"
	if fam == IPv6 {
		tool = "ip6tables"
	}
	return []ForwardChain{{Family: fam, Tool: tool, Table: "filter", Chain: "FORWARD", Drop: f[2] == "DROP"}}, nil
}
