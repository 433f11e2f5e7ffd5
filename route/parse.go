package route

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"runtime"
	"sort"
	"strconv"
	"strings"

	"github.com/valyala/fastjson"
)

// jsonRoute is one element of `ip -d -json route show`. Fields routepush
// cannot render back are captured only to mark the route Unrestorable.
type jsonRoute struct {
	Type     string                   `json:"type"`
	Dst      string                   `json:"dst"`
	Gateway  string                   `json:"gateway"`
	Dev      string                   `json:"dev"`
	Protocol string                   `json:"protocol"`
	Scope    string                   `json:"scope"`
	PrefSrc  string                   `json:"prefsrc"`
	Metric   uint32                   `json:"metric"`
	NHID     uint32                   `json:"nhid"` // 0: none
	Table    string                   `json:"table"`
	Pref     string                   `json:"pref"`
	Flags    []string                 `json:"flags"`
	Metrics  []map[string]json.Number `json:"metrics"`
	Nexthops []jsonNexthop            `json:"nexthops"`
	Via      json.RawMessage          `json:"via"`
	Encap    json.RawMessage          `json:"encap"`
	Expires  json.RawMessage          `json:"expires"`
	Tos      json.RawMessage          `json:"tos"`
}

type jsonNexthop struct {
	Gateway string          `json:"gateway"`
	Dev     string          `json:"dev"`
	Weight  int             `json:"weight"`
	Flags   []string        `json:"flags"`
	Via     json.RawMessage `json:"via"`
}

// ParseJSON parses the output of `ip -d -json route show` for one family.
// Family decides what "default" means.
func ParseJSON(data []byte, fam Family) ([]Route, error) {
	// fastjson, not encoding/json: reflection made a 5,000-route table cost
	// 20 ms to parse, and a run parses every node's table twice.
	p := getParser()
	// Nothing below keeps a reference into p's values. A parser that
	// held a large table is not kept: its cache would stay that size for
	// as long as routepush runs.
	defer func() { putParser(p, len(data)) }()
	v, err := p.ParseBytes(data)
	if err != nil {
		return nil, fmt.Errorf("route: parse ip -json output: %w", err)
	}
	entries, err := v.Array()
	if err != nil {
		return nil, fmt.Errorf("route: parse ip -json output: %w", err)
	}
	routes := make([]Route, 0, len(entries))
	for i, e := range entries {
		var raw jsonRoute
		if err := raw.decode(e); err != nil {
			return nil, fmt.Errorf("route: ip -json entry %d: %w", i, err)
		}
		r, err := raw.route(fam)
		if err == nil {
			err = validateFields(&r)
		}
		if err != nil {
			return nil, fmt.Errorf("route: ip -json entry %d (dst %q): %w", i, raw.Dst, err)
		}
		routes = append(routes, r)
	}
	return routes, nil
}

// parsers keep their value caches between tables: growing one from empty
// is most of the cost of a fresh parser. A parse holds about 1 kB of
// values per route, so the number of parsers is also the number of parses
// allowed at once: as many as there are CPUs, the most that can make
// progress. Unbounded, a run with 50 nodes in flight had twenty 1,000-route
// parses preempting each other, 23 MB of caches.
//
// It is the one piece of package-level mutable state in route, kept on
// purpose, as encoding/json and fmt keep theirs: it changes no result
// (ParseJSON's output depends only on its input), nobody can read or
// configure it, it is safe for concurrent use (a channel), and it is
// bounded in count (GOMAXPROCS) and in size (keepParserBelow). Its job is
// a process-wide bound on CPU and memory, which a value owned by each
// caller would have to be shared to keep.
var parsers = func() chan *fastjson.Parser {
	n := runtime.GOMAXPROCS(0)
	c := make(chan *fastjson.Parser, n)
	for range n {
		c <- new(fastjson.Parser)
	}
	return c
}()

// getParser waits for a free parser.
func getParser() *fastjson.Parser { return <-parsers }

// keepParserBelow is the largest input whose parser goes back to the pool
// with its cache: a 5,000-node cluster's table is about 1 MB. One that held more is
// replaced by a fresh one, so a large or hostile table costs memory only
// while it is parsed.
const keepParserBelow = 4 << 20

func putParser(p *fastjson.Parser, parsed int) {
	if parsed > keepParserBelow {
		p = new(fastjson.Parser)
	}
	parsers <- p
}

// decode fills j from one entry of ip's JSON array, as encoding/json would
// with the struct tags: a field of the wrong JSON type is an error.
func (j *jsonRoute) decode(v *fastjson.Value) error {
	o, err := v.Object()
	if err != nil {
		return err
	}
	o.Visit(func(key []byte, f *fastjson.Value) {
		if err != nil {
			return
		}
		if field := j.stringField(key); field != nil {
			b, e := f.StringBytes()
			if e != nil {
				err = fmt.Errorf("%s: %w", key, e)
			}
			*field = string(b)
			return
		}
		switch string(key) {
		case "metric":
			var m uint
			if m, err = f.Uint(); err == nil && m > 1<<32-1 {
				err = fmt.Errorf("metric %d out of range", m)
			}
			j.Metric = uint32(m)
		case "nhid":
			j.NHID, err = jsonNHID(f)
		case "flags":
			j.Flags, err = jsonStrings(f, "flags")
		case "metrics":
			j.Metrics, err = jsonMetrics(f)
		case "nexthops":
			j.Nexthops, err = jsonNexthops(f)
		case "via":
			j.Via = f.MarshalTo(nil)
		case "encap":
			j.Encap = f.MarshalTo(nil)
		case "expires":
			j.Expires = f.MarshalTo(nil)
		case "tos":
			j.Tos = f.MarshalTo(nil)
		}
	})
	return err
}

// jsonNHID reads the id of a route's nexthop object. The kernel numbers
// them from 1, so 0 would hide that the route uses one.
func jsonNHID(f *fastjson.Value) (uint32, error) {
	id, err := f.Uint()
	if err == nil && (id == 0 || id > 1<<32-1) {
		err = fmt.Errorf("nhid %d out of range", id)
	}
	return uint32(id), err
}

// stringField is where a string-valued key of ip's JSON goes, or nil.
func (j *jsonRoute) stringField(key []byte) *string {
	switch string(key) {
	case "type":
		return &j.Type
	case "dst":
		return &j.Dst
	case "gateway":
		return &j.Gateway
	case "dev":
		return &j.Dev
	case "protocol":
		return &j.Protocol
	case "scope":
		return &j.Scope
	case "prefsrc":
		return &j.PrefSrc
	case "table":
		return &j.Table
	case "pref":
		return &j.Pref
	}
	return nil
}

func jsonString(v *fastjson.Value, name string) (string, error) {
	b, err := v.StringBytes()
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return string(b), nil
}

func jsonStrings(v *fastjson.Value, name string) ([]string, error) {
	items, err := v.Array()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		s, err := jsonString(it, name)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func jsonMetrics(v *fastjson.Value) ([]map[string]json.Number, error) {
	items, err := v.Array()
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	var out []map[string]json.Number
	for _, it := range items {
		o, err := it.Object()
		if err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
		m := map[string]json.Number{}
		o.Visit(func(key []byte, n *fastjson.Value) {
			if n.Type() != fastjson.TypeNumber {
				err = fmt.Errorf("metrics: %s is not a number", key)
			}
			m[string(key)] = json.Number(n.String())
		})
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

func jsonNexthops(v *fastjson.Value) ([]jsonNexthop, error) {
	items, err := v.Array()
	if err != nil {
		return nil, fmt.Errorf("nexthops: %w", err)
	}
	out := make([]jsonNexthop, 0, len(items))
	for _, it := range items {
		var nh jsonNexthop
		o, err := it.Object()
		if err != nil {
			return nil, fmt.Errorf("nexthops: %w", err)
		}
		o.Visit(func(key []byte, f *fastjson.Value) {
			if err != nil {
				return
			}
			switch string(key) {
			case "gateway":
				nh.Gateway, err = jsonString(f, "nexthop gateway")
			case "dev":
				nh.Dev, err = jsonString(f, "nexthop dev")
			case "weight":
				nh.Weight, err = f.Int()
			case "flags":
				nh.Flags, err = jsonStrings(f, "nexthop flags")
			case "via":
				nh.Via = f.MarshalTo(nil)
			}
		})
		if err != nil {
			return nil, err
		}
		out = append(out, nh)
	}
	return out, nil
}

func (j *jsonRoute) route(fam Family) (Route, error) {
	var r Route
	var err error
	if r.Dst, err = parseDst(j.Dst, fam); err != nil {
		return r, err
	}
	r.Type = typeName(j.Type)
	if j.Gateway != "" {
		if r.Gateway, err = parseAddr(j.Gateway); err != nil {
			return r, fmt.Errorf("gateway: %w", err)
		}
	}
	if j.PrefSrc != "" {
		if r.PrefSrc, err = parseAddr(j.PrefSrc); err != nil {
			return r, fmt.Errorf("prefsrc: %w", err)
		}
	}
	if j.Protocol != "" {
		if r.Protocol, err = ParseProtocol(j.Protocol); err != nil {
			return r, err
		}
	} else {
		// iproute2 leaves out "boot" without -d; with -d it always prints it.
		r.Protocol = 3
	}
	r.Dev, r.Scope, r.Metric, r.Table, r.Pref, r.NHID = j.Dev, j.Scope, j.Metric, j.Table, j.Pref, j.NHID
	if len(j.Flags) > 0 {
		r.Flags = j.Flags
	}
	for _, m := range j.Metrics {
		names := make([]string, 0, len(m))
		for name := range m {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			r.Metrics = append(r.Metrics, Attr{Name: name, Value: m[name].String()})
		}
	}
	for _, nh := range j.Nexthops {
		n := Nexthop{Dev: nh.Dev, Weight: nh.Weight}
		if len(nh.Flags) > 0 {
			n.Flags = nh.Flags
		}
		if nh.Gateway != "" {
			if n.Gateway, err = parseAddr(nh.Gateway); err != nil {
				return r, fmt.Errorf("nexthop gateway: %w", err)
			}
		}
		if nh.Via != nil {
			r.Unrestorable = "nexthop via another family"
		}
		r.Nexthops = append(r.Nexthops, n)
	}
	// The nexthop object comes first: ip prints the object's gateway and
	// hops as if they were the route's, and without nhid nobody would see
	// that the route depends on it.
	switch {
	case j.NHID != 0:
		r.Unrestorable = "nhid"
	case j.Via != nil:
		r.Unrestorable = "via another family"
	case j.Encap != nil:
		r.Unrestorable = "encap"
	case j.Expires != nil:
		r.Unrestorable = "expires"
	case j.Tos != nil:
		r.Unrestorable = "tos"
	}
	return r, nil
}

// typeNumbers are the rtnetlink route types, for `ip -N` output.
var typeNumbers = map[string]string{
	"1": "unicast", "2": "local", "3": "broadcast", "4": "anycast", "5": "multicast",
	"6": "blackhole", "7": "unreachable", "8": "prohibit", "9": "throw", "10": "nat",
}

// typeName returns the name `ip route` accepts for a type, "" for unicast.
func typeName(t string) string {
	if name, ok := typeNumbers[t]; ok {
		t = name
	}
	if t == "unicast" {
		return ""
	}
	return t
}

// ParseText parses the text output of `ip -d route show` (or plain
// `ip route show`) for one family. It is the fallback for iproute2 builds
// older than 4.14, which have no -json.
func ParseText(data []byte, fam Family) ([]Route, error) {
	var routes []Route
	lines := bytes.Split(data, []byte("\n"))
	for n, line := range lines {
		s := strings.TrimRight(string(line), " \t\r")
		if strings.TrimSpace(s) == "" {
			continue
		}
		if s[0] == ' ' || s[0] == '\t' {
			// A continuation line: a hop of the multipath route above it,
			// or the "cache" line of `ip route get`.
			if len(routes) == 0 {
				return nil, fmt.Errorf("route: line %d: continuation with no route: %q", n+1, s)
			}
			last := &routes[len(routes)-1]
			f := strings.Fields(s)
			if f[0] == "nh_info" {
				// -d prints the route's nexthop object under it: "nh_info id 5
				// via ... dev ... scope link proto unspec" or "nh_info id 8
				// group 5/7 ...". It describes the object, not the route.
				if last.NHID == 0 {
					return nil, fmt.Errorf("route: line %d: nh_info for a route with no nhid: %q", n+1, s)
				}
				continue
			}
			if err := parseNexthopLine(last, f); err != nil {
				return nil, fmt.Errorf("route: line %d: %w: %q", n+1, err, s)
			}
			continue
		}
		r, err := parseTextRoute(strings.Fields(s), fam)
		if err != nil {
			return nil, fmt.Errorf("route: line %d: %w: %q", n+1, err, s)
		}
		routes = append(routes, r)
	}
	for i := range routes {
		markNHID(&routes[i]) // after the hops, which may set Unrestorable too
		if err := validateFields(&routes[i]); err != nil {
			return nil, fmt.Errorf("route: %s: %w", routes[i].Dst, err)
		}
	}
	return routes, nil
}

// markNHID makes "nhid" the reason a route is Unrestorable whatever else
// it has, as ParseJSON does.
func markNHID(r *Route) {
	if r.NHID != 0 {
		r.Unrestorable = "nhid"
	}
}

// ParseSpec reads a route as Route.Spec renders it: the arguments of `ip
// route replace`, on one line.
func ParseSpec(spec string, fam Family) (Route, error) {
	r, err := parseTextRoute(strings.Fields(spec), fam)
	markNHID(&r)
	if err == nil {
		err = validateFields(&r)
	}
	return r, err
}

// textKeys are the attributes iproute2 prints as "name value" after the
// destination; the value of those not modelled by Route is kept in Metrics.
var textMetricKeys = map[string]bool{
	"mtu": true, "advmss": true, "rtt": true, "rttvar": true, "reordering": true,
	"window": true, "cwnd": true, "initcwnd": true, "initrwnd": true, "ssthresh": true,
	"realms": true, "rto_min": true, "hoplimit": true, "features": true, "quickack": true,
	"congctl": true, "fastopen_no_cookie": true,
}

func parseTextRoute(f []string, fam Family) (Route, error) {
	var r Route
	r.Protocol = 3 // what the kernel records when nothing says otherwise, and what plain `ip route show` hides
	if len(f) > 0 && (routeTypes[f[0]] || typeNumbers[f[0]] != "") {
		r.Type = typeName(f[0])
		f = f[1:]
	}
	if len(f) == 0 {
		return r, fmt.Errorf("no destination")
	}
	var err error
	if r.Dst, err = parseDst(f[0], fam); err != nil {
		return r, err
	}
	f = f[1:]
	for len(f) > 0 {
		key := f[0]
		if knownFlags[key] {
			r.Flags = append(r.Flags, key)
			f = f[1:]
			continue
		}
		if key == "nexthop" {
			// Multipath hops on the same line, as `ip -o` and Spec print them.
			return r, parseInlineNexthops(&r, f)
		}
		if len(f) < 2 {
			return r, fmt.Errorf("%q has no value", key)
		}
		val := f[1]
		f = f[2:]
		switch key {
		case "via":
			if val == "inet" || val == "inet6" {
				if len(f) == 0 {
					return r, fmt.Errorf("via %s has no address", val)
				}
				r.Unrestorable = "via another family"
				val, f = f[0], f[1:]
			}
			if r.Gateway, err = parseAddr(val); err != nil {
				return r, fmt.Errorf("via: %w", err)
			}
		case "dev":
			r.Dev = val
		case "proto":
			if r.Protocol, err = ParseProtocol(val); err != nil {
				return r, err
			}
		case "scope":
			r.Scope = val
		case "src":
			if r.PrefSrc, err = parseAddr(val); err != nil {
				return r, fmt.Errorf("src: %w", err)
			}
		case "metric":
			m, err := strconv.ParseUint(val, 10, 32)
			if err != nil {
				return r, fmt.Errorf("metric: %w", err)
			}
			r.Metric = uint32(m)
		case "table":
			if val != "main" {
				r.Table = val
			}
		case "pref":
			r.Pref = val
		case "nhid":
			id, err := strconv.ParseUint(val, 10, 32)
			if err == nil && id == 0 {
				err = fmt.Errorf("0 is no nexthop object")
			}
			if err != nil {
				return r, fmt.Errorf("nhid: %w", err)
			}
			r.NHID = uint32(id)
			r.Unrestorable = key
		case "expires", "tos", "encap", "from", "error":
			r.Unrestorable = key
		default:
			if !textMetricKeys[key] {
				return r, fmt.Errorf("unknown attribute %q", key)
			}
			if val == "lock" && len(f) > 0 {
				r.Unrestorable = key + " lock"
				val, f = f[0], f[1:]
			}
			r.Metrics = append(r.Metrics, Attr{Name: key, Value: val})
		}
	}
	return r, nil
}

func parseInlineNexthops(r *Route, f []string) error {
	start := 0
	for i := 1; i <= len(f); i++ {
		if i == len(f) || f[i] == "nexthop" {
			if err := parseNexthopLine(r, f[start:i]); err != nil {
				return err
			}
			start = i
		}
	}
	return nil
}

func parseNexthopLine(r *Route, f []string) error {
	if len(f) == 0 || f[0] != "nexthop" {
		return fmt.Errorf("expected nexthop")
	}
	f = f[1:]
	var nh Nexthop
	for len(f) > 0 {
		key := f[0]
		if knownFlags[key] {
			nh.Flags = append(nh.Flags, key)
			f = f[1:]
			continue
		}
		if len(f) < 2 {
			return fmt.Errorf("nexthop %q has no value", key)
		}
		val := f[1]
		f = f[2:]
		var err error
		switch key {
		case "via":
			if val == "inet" || val == "inet6" {
				if len(f) == 0 {
					return fmt.Errorf("nexthop via %s has no address", val)
				}
				r.Unrestorable = "nexthop via another family"
				val, f = f[0], f[1:]
			}
			if nh.Gateway, err = parseAddr(val); err != nil {
				return fmt.Errorf("nexthop via: %w", err)
			}
		case "dev":
			nh.Dev = val
		case "weight":
			if nh.Weight, err = strconv.Atoi(val); err != nil {
				return fmt.Errorf("nexthop weight: %w", err)
			}
		default:
			r.Unrestorable = "nexthop " + key
		}
	}
	r.Nexthops = append(r.Nexthops, nh)
	return nil
}

// parseAddr reads an address as iproute2 prints one. A zone (fe80::1%eth0)
// is refused: iproute2 never prints one in a route, and its text is
// anything at all, which must not travel on into a batch line.
func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err == nil && a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("address %q has a zone", s)
	}
	return a, err
}
