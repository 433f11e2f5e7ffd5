package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"

	"github.com/routepush/routepush/internal/nodepath"
	"github.com/routepush/routepush/internal/proxyjump"
)

// fileNode is a node entry of hosts.yaml, as written.
type fileNode struct {
	Name         string   `mapstructure:"name"`
	Address      string   `mapstructure:"address"`
	InternalIP   string   `mapstructure:"internal_ip"`
	InternalIPs  []string `mapstructure:"internal_ips"`
	PodCIDR      string   `mapstructure:"pod_cidr"`
	PodCIDRs     []string `mapstructure:"pod_cidrs"`
	User         string   `mapstructure:"user"`
	Port         int      `mapstructure:"port"`
	IdentityFile string   `mapstructure:"identity_file"`
	Jump         string   `mapstructure:"jump"`
	Become       *bool    `mapstructure:"become"`
	SFTPServer   string   `mapstructure:"sftp_server"`
}

// fileDefaults are the per-node settings a node inherits unless it sets its own.
type fileDefaults struct {
	User         string `mapstructure:"user"`
	Port         int    `mapstructure:"port"`
	IdentityFile string `mapstructure:"identity_file"`
	Jump         string `mapstructure:"jump"`
	Become       bool   `mapstructure:"become"`
	SFTPServer   string `mapstructure:"sftp_server"`
}

// Load reads an inventory file with the default Options (see LoadFile)
// and returns its nodes.
func Load(path string) ([]Node, error) {
	f, err := LoadFile(path, Options{})
	if err != nil {
		return nil, err
	}
	return f.Nodes, nil
}

// LoadFile reads an inventory file, applies its defaults to every node and
// validates the table. Errors name the file, the node and the field. The
// file is routepush's hosts.yaml (YAML, or JSON/TOML by extension) or an
// Ansible inventory (INI or YAML, with the group_vars/ and host_vars/
// beside it), told apart by content.
func LoadFile(path string, opts Options) (*File, error) {
	format, data, err := detect(path)
	if err != nil {
		return nil, err
	}
	if format != formatRoutepush {
		return loadAnsible(path, format, data, opts)
	}
	f, errs, err := read(path, data)
	if err != nil {
		return nil, err
	}
	if f.Nodes != nil {
		errs = append(errs, validationErrs(Validate(path, f.Nodes), errs)...)
	}
	if len(errs) > 0 {
		return nil, &ValidationError{Source: "inventory " + path, Errs: errs}
	}
	return f, nil
}

// File is an inventory file used beside the Kubernetes API: the API says
// what each node's internal IPs and pod CIDRs are, the file how to reach
// it over SSH. So an entry needs only a name; an address, user, port and
// identity file override what the API and the defaults give, and internal
// IPs or pod CIDRs, if written, must agree with the API.
type File struct {
	Path     string
	Defaults SSH
	Nodes    []Node
	// Groups are an Ansible inventory's groups; nil for hosts.yaml.
	Groups Groups
	// Warnings are settings of an Ansible inventory routepush ignores.
	Warnings []string
	// ipsWritten[i] says whether node i's internal IPs were written in the
	// file rather than taken from its address.
	ipsWritten []bool
	// addrFrom[i] says where an Ansible host's address was set, for
	// messages; nil for hosts.yaml.
	addrFrom []string
}

// LoadAccess is LoadAccessWith with the default Options.
func LoadAccess(path string) (*File, error) { return LoadAccessWith(path, Options{}) }

// LoadAccessWith reads an inventory file for use beside the Kubernetes API
// (see File). It checks each entry's name, address, user and port and that
// no name is there twice; the rest is checked once merged with the API.
func LoadAccessWith(path string, opts Options) (*File, error) {
	format, data, err := detect(path)
	if err != nil {
		return nil, err
	}
	if format != formatRoutepush {
		return loadAnsibleAccess(path, format, data, opts)
	}
	f, errs, err := read(path, data)
	if err != nil {
		return nil, err
	}
	v := &validator{fields: fileFields}
	names := make(map[string]int, len(f.Nodes))
	for i := range f.Nodes {
		n := &f.Nodes[i]
		v.identity(i, n)
		if j, dup := names[n.Name]; dup && n.Name != "" {
			v.add(i, n, "name", "duplicate: nodes[%d] has the same name", j)
		} else {
			names[n.Name] = i
		}
	}
	v.sharedAddresses(f.Nodes, nil)
	errs = append(errs, validationErrs(&ValidationError{Errs: v.errs}, errs)...)
	if len(errs) > 0 {
		return nil, &ValidationError{Source: "inventory " + path, Errs: errs}
	}
	return f, nil
}

// read parses an inventory file's bytes, as detect read them, into nodes
// with their defaults applied: reading the file again would see another
// file if it changed in between, and nothing at all from a pipe (-i
// <(...)). Bytes that are not YAML (JSON, TOML by extension) are err;
// problems with single values are errs, reported with the rest once the
// whole table has been checked.
func read(path string, data []byte) (f *File, errs []error, err error) {
	v := viper.New()
	switch strings.ToLower(strings.TrimPrefix(filepath.Ext(path), ".")) {
	case "json":
		v.SetConfigType("json")
	case "toml":
		v.SetConfigType("toml")
	default:
		v.SetConfigType("yaml")
	}
	if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
		return nil, nil, fmt.Errorf("inventory %s: %w", path, unwrapViper(err))
	}
	f = &File{Path: path}
	errs = f.decode(v.AllSettings())
	return f, errs, nil
}

// validationErrs returns the problems Validate found, less those about a
// field that already failed to parse (its "missing" would only be noise).
func validationErrs(err error, parsed []error) []error {
	var verr *ValidationError
	if !errors.As(err, &verr) {
		return nil
	}
	type at struct {
		index int
		field string
	}
	failed := map[at]bool{}
	for _, e := range parsed {
		var fe *FieldError
		if errors.As(e, &fe) {
			failed[at{fe.Index, fe.Field}] = true
		}
	}
	var out []error
	for _, e := range verr.Errs {
		var fe *FieldError
		if errors.As(e, &fe) && (failed[at{fe.Index, fe.Field}] || failed[at{fe.Index, ""}]) {
			continue
		}
		out = append(out, e)
	}
	return out
}

// unwrapViper drops viper's generic wrapper so the YAML parser's own message
// (with its line number) is what the operator reads.
func unwrapViper(err error) error {
	var parse viper.ConfigParseError
	if errors.As(err, &parse) {
		if inner := errors.Unwrap(parse); inner != nil {
			return inner
		}
	}
	return err
}

// decode turns the file's settings into nodes. Each node is decoded on its
// own so that an unknown or mistyped key is reported against that node; a
// node whose values do not parse is still kept, less those values, so the
// rest of it can be validated in the same pass.
func (f *File) decode(settings map[string]any) []error {
	var errs []error
	for key := range settings {
		if key != "defaults" && key != "nodes" {
			errs = append(errs, fmt.Errorf("unknown top-level key %q (want defaults, nodes)", key))
		}
	}
	var defaults fileDefaults
	if d, ok := settings["defaults"]; ok {
		if err := strictDecode(d, &defaults); err != nil {
			errs = append(errs, &FieldError{Index: DefaultsIndex, Msg: err.Error()})
		}
	}
	list, ok := settings["nodes"].([]any)
	if !ok {
		if settings["nodes"] == nil {
			errs = append(errs, errors.New("no nodes: the file needs a 'nodes:' list"))
		} else {
			errs = append(errs, errors.New("'nodes' must be a list"))
		}
		return errs
	}
	if _, err := proxyjump.Parse(defaults.Jump); err != nil {
		errs = append(errs, &FieldError{Index: DefaultsIndex, Field: "jump", Msg: err.Error()})
		defaults.Jump = ""
	}
	if defaults.SFTPServer != "" {
		if err := nodepath.CheckProgram(defaults.SFTPServer, "sftp-server"); err != nil {
			errs = append(errs, &FieldError{Index: DefaultsIndex, Field: "sftp_server", Msg: fmt.Sprintf("%q: %v", defaults.SFTPServer, err)})
			defaults.SFTPServer = ""
		}
	}
	f.Defaults = SSH(defaults)
	f.Nodes = make([]Node, 0, len(list))
	f.ipsWritten = make([]bool, 0, len(list))
	for i, item := range list {
		var fn fileNode
		if err := strictDecode(item, &fn); err != nil {
			name, _ := asMap(item)["name"].(string)
			if !proxyjump.ValidHost(name) {
				name = ""
			}
			errs = append(errs, &FieldError{Node: name, Index: i, Msg: err.Error()})
			// Keep the position so later nodes' messages keep their index.
			f.Nodes = append(f.Nodes, Node{Name: name})
			f.ipsWritten = append(f.ipsWritten, false)
			continue
		}
		n, ferrs := fn.node(i, defaults)
		errs = append(errs, ferrs...)
		f.Nodes = append(f.Nodes, n)
		f.ipsWritten = append(f.ipsWritten, fn.InternalIP != "" || len(fn.InternalIPs) > 0)
	}
	return errs
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// strictDecode decodes a YAML mapping into out, refusing keys out does not
// have: a misspelt "pod_cdir" must not silently become "no pod CIDR".
func strictDecode(in any, out any) error {
	if _, ok := in.(map[string]any); !ok {
		return fmt.Errorf("expected a mapping of settings, got %T", in)
	}
	var md mapstructure.Metadata
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		Result:           out,
		Metadata:         &md,
		WeaklyTypedInput: true,
	})
	if err != nil {
		return err
	}
	if err := dec.Decode(in); err != nil {
		return cleanDecodeError(err)
	}
	if len(md.Unused) > 0 {
		sort.Strings(md.Unused)
		return fmt.Errorf("unknown key %q", strings.Join(md.Unused, `", "`))
	}
	return nil
}

// cleanDecodeError shortens mapstructure's "1 error(s) decoding:\n\n* ..." to
// its message.
func cleanDecodeError(err error) error {
	msg := err.Error()
	if i := strings.Index(msg, "* "); i >= 0 {
		msg = msg[i+2:]
	}
	return errors.New(strings.TrimSpace(msg))
}

// node parses the entry's addresses and merges the defaults. Values that do
// not parse are reported and left out, so Validate can still check the rest.
func (fn *fileNode) node(i int, d fileDefaults) (Node, []error) {
	n := Node{Name: fn.Name, Address: fn.Address, SSH: SSH{User: fn.User, Port: fn.Port, IdentityFile: fn.IdentityFile, Jump: fn.Jump, Become: d.Become}}
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Node: validName(fn.Name), Index: i, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if n.SSH.User == "" {
		n.SSH.User = d.User
	}
	if n.SSH.Port == 0 {
		n.SSH.Port = d.Port
	}
	if n.SSH.IdentityFile == "" {
		n.SSH.IdentityFile = d.IdentityFile
	}
	if n.SSH.Jump == "" {
		n.SSH.Jump = d.Jump
	}
	if fn.Become != nil {
		n.SSH.Become = *fn.Become
	}
	n.SSH.SFTPServer = fn.SFTPServer
	if n.SSH.SFTPServer == "" {
		n.SSH.SFTPServer = d.SFTPServer
	}
	if _, err := proxyjump.Parse(fn.Jump); err != nil {
		bad("jump", "%v", err)
	}
	if fn.InternalIP != "" && len(fn.InternalIPs) > 0 {
		bad("internal_ip", "set both internal_ip and internal_ips; use one")
	}
	ipStrings := fn.InternalIPs
	if fn.InternalIP != "" {
		ipStrings = []string{fn.InternalIP}
	}
	if len(ipStrings) == 0 {
		// The SSH address is the next hop unless said otherwise.
		if a, err := netip.ParseAddr(fn.Address); err == nil {
			ipStrings = []string{a.String()}
		}
	}
	for _, s := range ipStrings {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil {
			bad("internal_ip", "%q is not an IP address", s)
			continue
		}
		n.InternalIPs = append(n.InternalIPs, a.Unmap())
	}
	if fn.PodCIDR != "" && len(fn.PodCIDRs) > 0 {
		bad("pod_cidr", "set both pod_cidr and pod_cidrs; use one")
	}
	cidrStrings := fn.PodCIDRs
	if fn.PodCIDR != "" {
		cidrStrings = []string{fn.PodCIDR}
	}
	for _, s := range cidrStrings {
		p, err := ParseCIDR(s)
		if err != nil {
			bad("pod_cidr", "%v", err)
			continue
		}
		n.PodCIDRs = append(n.PodCIDRs, p)
	}
	return n, errs
}

func validName(s string) string {
	if proxyjump.ValidHost(s) {
		return s
	}
	return ""
}

// ParseCIDR parses a pod CIDR and insists on its canonical form: a CIDR with
// host bits set (100.64.0.5/24) is almost always a typo for something else,
// so the error says what the network would be instead of guessing.
func ParseCIDR(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR (want e.g. 100.64.0.0/24)", s)
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%q overlaps ::ffff:0:0/96 (IPv4-mapped addresses): write IPv4 CIDRs in dotted form", s)
	}
	if p.Addr().Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q: a CIDR has no zone", s)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set; did you mean %s?", s, m)
	}
	return p, nil
}
