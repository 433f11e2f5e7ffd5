// Package lab builds routepush's test lab on one Linux machine: N nodes,
// each a network namespace with its own kernel routing table, an eth0 on a
// shared bridge, its pod IP on lo and a real OpenSSH sshd with its own host
// key; plus a bastion namespace on the same bridge from which routepush
// runs. The bridge lives in a namespace of its own, so nothing in the
// host's namespace routes to lab addresses (198.18.0.0/16, pods in
// 100.64.0.0/10; with DualStack also 2001:db8::/64, pods in 2001:db8:64::/48).
//
// With Options.Jump the bastion sits on a segment of its own
// (198.19.0.0/24) whose only other member is a jump host, also on the nodes'
// bridge: the bastion reaches nodes only through the jump host's sshd. With
// Options.SudoUser nodes accept only that non-root user, who may run ip
// through passwordless sudo.
//
// With Options.Dropbear (or Lab.UseDropbear) nodes run Dropbear instead of
// sshd; with Options.DropbearNoSFTP, without an SFTP server (dropbear.go).
//
// It needs root, iproute2, openssh-server, sudo, (for pings) iputils-ping
// and (for Dropbear nodes) dropbear-bin with /usr/lib/sftp-server linked
// to OpenSSH's; scripts/install-deps.sh installs them.
package lab

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sync/errgroup"

	"github.com/routepush/routepush/remote"
)

// Node is one lab node.
type Node struct {
	Name    string
	NS      string // network namespace
	Addr    netip.Addr
	PodCIDR netip.Prefix
	PodIP   netip.Addr    // on lo, inside PodCIDR
	Dir     string        // its sshd config, keys, log and "filesystem" folders
	HostKey ssh.PublicKey `json:"-"`
	// The IPv6 counterparts, set in a DualStack lab.
	Addr6    netip.Addr   `json:",omitzero"`
	PodCIDR6 netip.Prefix `json:",omitzero"`
	PodIP6   netip.Addr   `json:",omitzero"`
	// Dropbear: the node runs Dropbear, not OpenSSH's sshd (dropbear.go);
	// NoSFTP: without an SFTP server.
	Dropbear bool `json:",omitempty"`
	NoSFTP   bool `json:",omitempty"`
}

// Lab is a running lab.
type Lab struct {
	Prefix  string // namespace name prefix, unique per lab
	Dir     string
	Bridge  string // namespace holding the bridge
	Bastion string // namespace routepush runs in
	Nodes   []*Node
	// BastionAddr is the bastion's address on the bridge.
	BastionAddr netip.Addr
	DualStack   bool
	// Jump is the jump host, with Options.Jump; its Addr is the address
	// the bastion reaches it on.
	Jump *Node `json:",omitempty"`
	// SudoUser is the only login nodes accept, with Options.SudoUser.
	SudoUser string `json:",omitempty"`
}

// Options size a lab.
type Options struct {
	Nodes  int
	Dir    string // default: a new temporary directory
	Prefix string // default: "rp" and random hex
	// DualStack gives every node and the bastion an IPv6 address and every
	// node an IPv6 pod CIDR beside the IPv4 ones. SSH stays on IPv4.
	DualStack bool
	// Jump puts the bastion on a segment of its own with a jump host, the
	// only way to the nodes.
	Jump bool
	// SudoUser makes nodes refuse root and accept only this user (uid
	// 4242), allowed to run ip through sudo without a password.
	SudoUser string
	// Dropbear lists the nodes (by index) that run Dropbear instead of
	// OpenSSH's sshd; DropbearNoSFTP those of them without an SFTP server.
	Dropbear, DropbearNoSFTP []int
}

var (
	labNet      = netip.MustParsePrefix("198.18.0.0/16")
	bastionAddr = netip.MustParseAddr("198.18.0.1")
	firstNode   = netip.MustParseAddr("198.18.0.10")
	podBase     = netip.MustParseAddr("100.64.0.0")
	labNet6     = netip.MustParsePrefix("2001:db8::/64")
	bastion6    = netip.MustParseAddr("2001:db8::1")
	// The bastion's own segment, behind the jump host.
	jumpNet         = netip.MustParsePrefix("198.19.0.0/24")
	jumpBastionAddr = netip.MustParseAddr("198.19.0.1")
	jumpOuterAddr   = netip.MustParseAddr("198.19.0.2")
	jumpInnerAddr   = netip.MustParseAddr("198.18.0.2")
)

// NodeAddr returns node i's address: 198.18.0.10 and up.
func NodeAddr(i int) netip.Addr { return addOffset(firstNode, uint32(i)) }

// NodePodCIDR returns node i's pod CIDR: the i-th /24 of 100.64.0.0/10.
func NodePodCIDR(i int) netip.Prefix { return netip.PrefixFrom(addOffset(podBase, uint32(i)<<8), 24) }

// NodeAddr6 returns node i's IPv6 address: 2001:db8::100 and up.
func NodeAddr6(i int) netip.Addr {
	b := bastion6.As16()
	binary.BigEndian.PutUint32(b[12:], 0x100+uint32(i))
	return netip.AddrFrom16(b)
}

// NodePodCIDR6 returns node i's IPv6 pod CIDR: 2001:db8:64:i::/64.
func NodePodCIDR6(i int) netip.Prefix {
	b := netip.MustParseAddr("2001:db8:64::").As16()
	binary.BigEndian.PutUint16(b[6:], uint16(i))
	return netip.PrefixFrom(netip.AddrFrom16(b), 64)
}

func addOffset(a netip.Addr, off uint32) netip.Addr {
	b := a.As4()
	n := binary.BigEndian.Uint32(b[:]) + off
	binary.BigEndian.PutUint32(b[:], n)
	return netip.AddrFrom4(b)
}

// Up creates a lab. On error everything created so far is torn down.
func Up(ctx context.Context, o Options) (l *Lab, err error) {
	if o.Nodes < 1 || o.Nodes > 16000 {
		return nil, fmt.Errorf("lab: %d nodes: want 1 to 16000", o.Nodes)
	}
	if o.Prefix == "" {
		b := make([]byte, 3)
		_, _ = rand.Read(b)
		o.Prefix = "rp" + hex.EncodeToString(b)
	}
	if o.Dir == "" {
		if o.Dir, err = os.MkdirTemp("", "routepush-lab-"+o.Prefix+"-"); err != nil {
			return nil, err
		}
	}
	if o.Dir, err = filepath.Abs(o.Dir); err != nil {
		return nil, err
	}
	if o.DualStack && o.Nodes > 65535 {
		return nil, fmt.Errorf("lab: %d nodes: a dual-stack lab has at most 65535", o.Nodes)
	}
	if o.DualStack && o.Jump {
		return nil, errors.New("lab: a jump host lab is IPv4 only")
	}
	l = &Lab{Prefix: o.Prefix, Dir: o.Dir, Bridge: o.Prefix + "-br", Bastion: o.Prefix + "-bastion", BastionAddr: bastionAddr,
		DualStack: o.DualStack, SudoUser: o.SudoUser}
	if o.Jump {
		l.BastionAddr = jumpBastionAddr
		l.Jump = &Node{Name: "jump", NS: o.Prefix + "-jump", Addr: jumpOuterAddr, Dir: filepath.Join(o.Dir, "nodes", "jump")}
	}
	defer func() {
		if err != nil {
			l.Down()
			l = nil
		}
	}()
	for _, d := range []string{"/run/sshd", "/var/lib/routepush", "/etc/routepush", "/etc/systemd/system", filepath.Join(o.Dir, "nodes")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := l.writeClientKey(); err != nil {
		return nil, err
	}
	if err := raiseHostLimits(o.Nodes); err != nil {
		return nil, err
	}
	if o.SudoUser != "" {
		// sshd reads authorized_keys as the user it logs in.
		for _, p := range []string{o.Dir, filepath.Join(o.Dir, "nodes"), filepath.Join(o.Dir, "authorized_keys")} {
			if err := os.Chmod(p, 0o755); err != nil {
				return nil, err
			}
		}
	}
	if err := l.upBridgeAndBastion(ctx, o.Nodes); err != nil {
		return nil, err
	}
	if l.Jump != nil {
		if err := l.upJump(ctx); err != nil {
			return nil, err
		}
	}
	for _, i := range append(append([]int{}, o.Dropbear...), o.DropbearNoSFTP...) {
		if i < 0 || i >= o.Nodes {
			return nil, fmt.Errorf("lab: Dropbear node %d: the lab has nodes 0 to %d", i, o.Nodes-1)
		}
	}
	for i := 0; i < o.Nodes; i++ {
		n := &Node{
			Name:    fmt.Sprintf("node-%d", i),
			NS:      fmt.Sprintf("%s-n%d", o.Prefix, i),
			Addr:    NodeAddr(i),
			PodCIDR: NodePodCIDR(i),
			PodIP:   NodePodCIDR(i).Addr().Next(),
			Dir:     filepath.Join(o.Dir, "nodes", fmt.Sprintf("node-%d", i)),
		}
		if o.DualStack {
			n.Addr6, n.PodCIDR6, n.PodIP6 = NodeAddr6(i), NodePodCIDR6(i), NodePodCIDR6(i).Addr().Next()
		}
		l.Nodes = append(l.Nodes, n)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for _, n := range l.Nodes {
		g.Go(func() error { return l.upNode(gctx, n, o) })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := l.writeKnownHosts(); err != nil {
		return nil, err
	}
	if err := l.WriteInventory(l.InventoryPath(), l.Nodes); err != nil {
		return nil, err
	}
	return l, l.writeConfig()
}

// raiseHostLimits makes room in the kernel's backlog and its ARP and NDP
// tables for a big lab. Their limits (gc_thresh1-3) are the host's, shared by every
// namespace: with the defaults (128/512/1024) a 1,000-node lab's bastion
// loses neighbours as fast as it learns them, and connects fail with "no
// route to host". Limits are only ever raised.
func raiseHostLimits(nodes int) error {
	limits := map[string]int{
		// A broadcast (an ARP request) on the lab's segment is copied to
		// every port of every bridge in one go, each copy queued on the
		// CPU's backlog, 1,000 packets by default: past that, copies
		// were dropped, and at 3,000 nodes a node whose place in the
		// flood came late never answered the bastion's ARP ("no route
		// to host" after ten tries).
		"/proc/sys/net/core/netdev_max_backlog": 2*nodes + 1000,
	}
	for _, fam := range []string{"ipv4", "ipv6"} {
		for i, want := range []int{2 * nodes, 4 * nodes, 8 * nodes} {
			limits[fmt.Sprintf("/proc/sys/net/%s/neigh/default/gc_thresh%d", fam, i+1)] = want
		}
	}
	for path, want := range limits {
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if have, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && have >= want {
			continue
		}
		if err := os.WriteFile(path, []byte(strconv.Itoa(want)), 0o644); err != nil {
			return fmt.Errorf("lab: raising %s for %d nodes: %w", path, nodes, err)
		}
	}
	return nil
}

// run runs a command on the host and returns its combined output on error.
func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("lab: %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ipBatch runs `ip -batch -` in a namespace ("" = the host's).
func ipBatch(ctx context.Context, ns string, lines ...string) error {
	args := []string{"-batch", "-"}
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("lab: ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// portsPerBridge is how many nodes share one bridge: a Linux bridge holds
// at most 1,024 ports (BR_MAX_PORTS), so a bigger lab hangs further
// bridges of this many nodes off br0, each by a veth pair. The segment
// stays one layer-2 network, a tree without loops.
const portsPerBridge = 1000

// nodeBridge is the bridge node i's veth joins.
func nodeBridge(i int) string {
	if i < portsPerBridge {
		return "br0"
	}
	return fmt.Sprintf("br0-%d", i/portsPerBridge)
}

func (l *Lab) upBridgeAndBastion(ctx context.Context, nodes int) error {
	if err := ipBatch(ctx, "",
		"netns add "+l.Bridge,
		"netns add "+l.Bastion,
		"link add eth0 netns "+l.Bastion+" type veth peer name bastion netns "+l.Bridge,
	); err != nil {
		return err
	}
	bastionBridge, bits := "br0", labNet.Bits()
	if l.Jump != nil {
		bastionBridge, bits = "br1", jumpNet.Bits()
	}
	if err := ipBatch(ctx, l.Bridge,
		"link set lo up",
		// No multicast snooping: neighbour solicitations reach every
		// port at once, instead of waiting for MLD reports.
		"link add br0 type bridge mcast_snooping 0",
		"link set br0 up",
		"link add br1 type bridge",
		"link set br1 up",
		"link set bastion master "+bastionBridge,
		"link set bastion up",
	); err != nil {
		return err
	}
	for k := 1; k*portsPerBridge < nodes; k++ {
		leaf := nodeBridge(k * portsPerBridge)
		if err := ipBatch(ctx, l.Bridge,
			"link add "+leaf+" type bridge mcast_snooping 0",
			fmt.Sprintf("link add up%d type veth peer name down%d", k, k),
			fmt.Sprintf("link set up%d master br0", k),
			fmt.Sprintf("link set down%d master %s", k, leaf),
			fmt.Sprintf("link set up%d up", k),
			fmt.Sprintf("link set down%d up", k),
			"link set "+leaf+" up",
		); err != nil {
			return err
		}
	}
	lines := []string{
		"link set lo up",
		fmt.Sprintf("addr add %s/%d dev eth0", l.BastionAddr, bits),
	}
	if l.DualStack {
		lines = append(lines, fmt.Sprintf("addr add %s/%d dev eth0 nodad", bastion6, labNet6.Bits()))
	}
	if err := ipBatch(ctx, l.Bastion, append(lines, "link set eth0 up")...); err != nil {
		return err
	}
	// On a 1,000-node bridge the first connections' ARP broadcasts are
	// copied to every port at once; three probes a second apart were not
	// always enough ("no route to host"). Ten are.
	_, err := l.Exec(ctx, l.Bastion, "sysctl", "-qw", "net.ipv4.neigh.eth0.mcast_solicit=10", "net.ipv6.neigh.eth0.mcast_solicit=10")
	return err
}

// upJump brings up the jump host: eth0 on the bastion's segment, eth1 on
// the nodes' bridge, no forwarding between them, and an sshd.
func (l *Lab) upJump(ctx context.Context) error {
	j := l.Jump
	if err := ipBatch(ctx, "",
		"netns add "+j.NS,
		"link add eth0 netns "+j.NS+" type veth peer name jout netns "+l.Bridge,
		"link add eth1 netns "+j.NS+" type veth peer name jin netns "+l.Bridge,
	); err != nil {
		return err
	}
	if err := ipBatch(ctx, l.Bridge, "link set jout master br1", "link set jout up", "link set jin master br0", "link set jin up"); err != nil {
		return err
	}
	if err := ipBatch(ctx, j.NS,
		"link set lo up",
		fmt.Sprintf("addr add %s/%d dev eth0", jumpOuterAddr, jumpNet.Bits()),
		fmt.Sprintf("addr add %s/%d dev eth1", jumpInnerAddr, labNet.Bits()),
		"link set eth0 up",
		"link set eth1 up",
	); err != nil {
		return err
	}
	if err := l.writeNodeFiles(j); err != nil {
		return err
	}
	return l.StartSSHD(ctx, j)
}

func (l *Lab) upNode(ctx context.Context, n *Node, o Options) error {
	veth := "v" + strings.TrimPrefix(n.Name, "node-")
	if err := ipBatch(ctx, "",
		"netns add "+n.NS,
		"link add eth0 netns "+n.NS+" type veth peer name "+veth+" netns "+l.Bridge,
	); err != nil {
		return err
	}
	i, _ := strconv.Atoi(strings.TrimPrefix(n.Name, "node-"))
	if err := ipBatch(ctx, l.Bridge, "link set "+veth+" master "+nodeBridge(i), "link set "+veth+" up"); err != nil {
		return err
	}
	lines := []string{
		"link set lo up",
		fmt.Sprintf("addr add %s/32 dev lo", n.PodIP),
		fmt.Sprintf("addr add %s/%d dev eth0", n.Addr, labNet.Bits()),
	}
	if n.Addr6.IsValid() {
		// nodad: usable at once, not after duplicate address detection.
		lines = append(lines,
			fmt.Sprintf("addr add %s/128 dev lo", n.PodIP6),
			fmt.Sprintf("addr add %s/%d dev eth0 nodad", n.Addr6, labNet6.Bits()))
	}
	if n.Addr6.IsValid() {
		// No duplicate address detection for the link-local address either:
		// while it is tentative, neighbour discovery stalls for a second
		// and the first pod pings time out.
		if _, err := l.Exec(ctx, n.NS, "sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0"); err != nil {
			return err
		}
	}
	if err := ipBatch(ctx, n.NS, append(lines, "link set eth0 up")...); err != nil {
		return err
	}
	if err := l.writeNodeFiles(n); err != nil {
		return err
	}
	if noSFTP := slices.Contains(o.DropbearNoSFTP, i); noSFTP || slices.Contains(o.Dropbear, i) {
		if err := l.setUpDropbear(ctx, n, noSFTP); err != nil {
			return err
		}
	}
	return l.StartSSHD(ctx, n)
}

// sshdConfig is each node's sshd_config; extra lines come first because
// sshd keeps the first value it reads for most keywords.
const sshdConfig = `Port 22
HostKey {{dir}}/ssh_host_ed25519_key
PidFile {{dir}}/sshd.pid
AuthorizedKeysFile {{lab}}/authorized_keys
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
MaxStartups 200:30:1000
MaxSessions 100
LogLevel VERBOSE
Subsystem sftp /usr/lib/openssh/sftp-server
`

func (l *Lab) writeNodeFiles(n *Node) error {
	// /var/lib/routepush as routepush makes it on a node that has none
	// (root's alone); the others as a distribution ships them.
	for _, d := range []string{"var-lib-routepush", "etc-routepush", "etc-systemd-system", "root-home"} {
		mode := os.FileMode(0o755)
		if d == "var-lib-routepush" {
			mode = 0o700
		}
		if err := os.MkdirAll(filepath.Join(n.Dir, d), mode); err != nil {
			return err
		}
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	if err := writeKey(filepath.Join(n.Dir, "ssh_host_ed25519_key"), priv, "host key of "+n.Name); err != nil {
		return err
	}
	if n.HostKey, err = ssh.NewPublicKey(pub); err != nil {
		return err
	}
	cfg := strings.NewReplacer("{{dir}}", n.Dir, "{{lab}}", l.Dir).Replace(sshdConfig)
	if l.SudoUser != "" && n != l.Jump {
		cfg = "PermitRootLogin no\nAllowUsers " + l.SudoUser + "\n" + cfg
		if err := l.writeUserFiles(n); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(n.Dir, "sshd_config"), []byte(cfg), 0o644)
}

const sudoUID = 4242

// writeUserFiles gives a node its own /etc/passwd, group, shadow and
// sudoers (bind-mounted by nodeStart): the host's, plus the sudo user. The
// host's own files stay as they are.
func (l *Lab) writeUserFiles(n *Node) error {
	home := filepath.Join(n.Dir, "home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		return err
	}
	if err := os.Chown(home, sudoUID, sudoUID); err != nil {
		return err
	}
	u := l.SudoUser
	for name, line := range map[string]string{
		"passwd": fmt.Sprintf("%s:x:%d:%d::%s:/bin/sh", u, sudoUID, sudoUID, home),
		"group":  fmt.Sprintf("%s:x:%d:", u, sudoUID),
		"shadow": u + ":*:19000:0:99999:7:::", // no password; not locked
	} {
		host, err := os.ReadFile("/etc/" + name)
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if name == "shadow" {
			mode = 0o640
		}
		if err := os.WriteFile(filepath.Join(n.Dir, name), append(host, []byte(line+"\n")...), mode); err != nil {
			return err
		}
	}
	return l.SetSudoers(n, true)
}

// SetSudoers rewrites a node's sudoers in place (the bind mount follows the
// file, not its name): the sudo user may run exactly the commands of
// remote.SudoersLine as root (ip with routepush's fixed arguments,
// sftp-server without any), without a password or, with passwordless
// false, only after typing one.
func (l *Lab) SetSudoers(n *Node, passwordless bool) error {
	// Exactly the line routepush prints in its hint and the README: the
	// become tests prove it is enough.
	line := remote.SudoersLine(l.SudoUser)
	if !passwordless {
		line = strings.Replace(line, "NOPASSWD: ", "", 1)
	}
	return l.SetSudoersLine(n, line)
}

// SetSudoersLine gives a node's sudoers this line for the sudo user (a
// node whose ip or sftp-server is not where Debian has it:
// remote.SudoersLineFor).
func (l *Lab) SetSudoersLine(n *Node, line string) error {
	sudoers := fmt.Sprintf(`Defaults env_reset
Defaults secure_path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
root ALL=(ALL:ALL) ALL
%s
`, line)
	path := filepath.Join(n.Dir, "sudoers")
	if err := os.WriteFile(path, []byte(sudoers), 0o440); err != nil {
		return err
	}
	return os.Chmod(path, 0o440)
}

func writeKey(path string, priv ed25519.PrivateKey, comment string) error {
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(block), 0o600)
}

// nodeMounts runs inside the node's namespace, in the private mount
// namespace ip netns exec gives: the node's own folders stand in for the
// paths routepush writes on nodes. $1 is the node's folder. Each node also
// gets its own empty /root, as a fresh machine has: the host's shell
// start-up files would otherwise run in every SSH session. A node with a
// run-systemd folder (SetRunSystemd) gets it as /run/systemd: systemd
// and networkd "run" there as far as files tell. A node with a mounts.sh
// runs it last (SetMounts): a test's own mounts, such as a read-only or a
// full /var/lib/routepush.
const nodeMounts = `set -e
# Every lab namespace is a mount under /run/netns, and each one made later
# propagates into this mount namespace too: N nodes would hold N² mounts
# (1 MB more per node at 3,000 nodes). A node needs none of them.
umount -l /run/netns 2>/dev/null || true
echo 1 > /proc/sys/net/ipv4/ip_forward
echo 1 > /proc/sys/net/ipv6/conf/all/forwarding
mount --bind "$1/var-lib-routepush" /var/lib/routepush
mount --bind "$1/etc-routepush" /etc/routepush
mount --bind "$1/etc-systemd-system" /etc/systemd/system
mount --bind "$1/root-home" /root
for f in passwd group shadow sudoers; do
	[ ! -f "$1/$f" ] || mount --bind "$1/$f" "/etc/$f"
done
if [ -d "$1/run-systemd" ]; then
	mkdir -p /run/systemd
	mount --bind "$1/run-systemd" /run/systemd
fi
[ ! -f "$1/mounts.sh" ] || . "$1/mounts.sh"
`

// nodeStart starts the node's sshd with its mounts.
const nodeStart = nodeMounts + `rm -f "$1/sshd.pid"
shift
exec /usr/sbin/sshd "$@"
`

// NodeExec runs a command on a node as its sshd sessions would: in its
// namespace, with its own folders mounted. It returns stdout.
func (l *Lab) NodeExec(ctx context.Context, n *Node, args ...string) (string, error) {
	return l.Exec(ctx, n.NS, "sh", append([]string{"-c", nodeMounts + "shift\nexec \"$@\"\n", "sh", n.Dir}, args...)...)
}

// SetRunSystemd gives a node its own /run/systemd holding files (path
// relative to it, content; a path ending in / is a folder) and restarts
// its sshd to mount it.
func (l *Lab) SetRunSystemd(ctx context.Context, n *Node, files map[string]string) error {
	dir := filepath.Join(n.Dir, "run-systemd")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return l.RestartSSHD(ctx, n)
}

// SetMounts gives a node more mounts, a shell script run (sourced, as
// root, with set -e) after its own in every namespace its sshd and
// NodeExec start, and restarts its sshd with extra options. $1 is the
// node's folder.
func (l *Lab) SetMounts(ctx context.Context, n *Node, script string, extra ...string) error {
	if err := os.WriteFile(filepath.Join(n.Dir, "mounts.sh"), []byte(script), 0o644); err != nil {
		return err
	}
	return l.RestartSSHD(ctx, n, extra...)
}

// StartSSHD starts (or, after StopSSHD, restarts) a node's sshd and waits
// for its pid file, which sshd writes once it listens. extra are more sshd
// options such as "-o", "ForceCommand=/path/script". A forced command runs
// for SFTP too: ExecSFTP is the line a script starts with to let it
// through.
//
// A Dropbear node starts Dropbear instead, extra being Dropbear's options.
func (l *Lab) StartSSHD(ctx context.Context, n *Node, extra ...string) error {
	if n.Dropbear {
		return l.startDropbear(ctx, n, extra...)
	}
	args := []string{"netns", "exec", n.NS, "sh", "-c", nodeStart, "sh", n.Dir,
		"-f", filepath.Join(n.Dir, "sshd_config"), "-E", filepath.Join(n.Dir, "sshd.log")}
	if err := run(ctx, "ip", append(args, extra...)...); err != nil {
		return err
	}
	return WaitFile(ctx, filepath.Join(n.Dir, "sshd.pid"), time.Now().Add(30*time.Second))
}

// RestartSSHD stops a node's sshd (and its sessions) and starts it again
// with extra options.
func (l *Lab) RestartSSHD(ctx context.Context, n *Node, extra ...string) error {
	if err := l.StopSSHD(ctx, n); err != nil {
		return err
	}
	return l.StartSSHD(ctx, n, extra...)
}

// StopSSHD kills every process in the node's namespace: its sshd and any
// session still running.
func (l *Lab) StopSSHD(ctx context.Context, n *Node) error {
	return killNamespace(ctx, n.NS)
}

// WaitFile waits for a file to exist; sshd writes its pid file after it
// has bound its port.
func WaitFile(ctx context.Context, path string, deadline time.Time) error {
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear", path)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (l *Lab) writeClientKey() error {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	if err := writeKey(l.IdentityPath(), priv, "routepush lab"); err != nil {
		return err
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(l.Dir, "authorized_keys"), ssh.MarshalAuthorizedKey(sshPub), 0o600)
}

// IdentityPath is the private key routepush logs in with.
func (l *Lab) IdentityPath() string { return filepath.Join(l.Dir, "id_ed25519") }

// KnownHostsPath is the known_hosts file holding every node's host key.
func (l *Lab) KnownHostsPath() string { return filepath.Join(l.Dir, "known_hosts") }

// InventoryPath is the generated hosts.yaml of all nodes.
func (l *Lab) InventoryPath() string { return filepath.Join(l.Dir, "hosts.yaml") }

// ConfigPath is a routepush.yaml pointing at the lab's key and known_hosts.
func (l *Lab) ConfigPath() string { return filepath.Join(l.Dir, "routepush.yaml") }

func (l *Lab) writeKnownHosts() error {
	var b strings.Builder
	if l.Jump != nil {
		b.WriteString(KnownHostsLine(l.Jump.Addr.String(), l.Jump.HostKey) + "\n")
	}
	for _, n := range l.Nodes {
		hosts := n.Addr.String()
		if n.Addr6.IsValid() {
			hosts += "," + n.Addr6.String()
		}
		b.WriteString(KnownHostsLine(hosts, n.HostKey) + "\n")
	}
	return os.WriteFile(l.KnownHostsPath(), []byte(b.String()), 0o644)
}

// KnownHostsLine renders a known_hosts line.
func KnownHostsLine(host string, key ssh.PublicKey) string {
	return host + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
}

// SSHConfigPath is the lab's ssh_config, empty unless a test writes one: it
// keeps the host's ~/.ssh/config and /etc/ssh/ssh_config out of lab runs.
func (l *Lab) SSHConfigPath() string { return filepath.Join(l.Dir, "ssh_config") }

// HomeDir is routepush's $HOME in the lab: no ~/.ssh of the host's.
func (l *Lab) HomeDir() string { return filepath.Join(l.Dir, "bastion-home") }

func (l *Lab) writeConfig() error {
	if err := os.MkdirAll(l.HomeDir(), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(l.SSHConfigPath(), []byte("# the lab's ssh_config\n"), 0o644); err != nil {
		return err
	}
	user := "root"
	if l.SudoUser != "" {
		user = l.SudoUser
	}
	cfg := fmt.Sprintf("known-hosts: %s\nidentity: [%s]\nuser: %s\nssh-config: %s\n", l.KnownHostsPath(), l.IdentityPath(), user, l.SSHConfigPath())
	if l.Jump != nil {
		cfg += fmt.Sprintf("jump: root@%s\n", l.Jump.Addr)
	}
	return os.WriteFile(l.ConfigPath(), []byte(cfg), 0o644)
}

// AuthorizeKey lets a public key log in to every node (and the jump host).
func (l *Lab) AuthorizeKey(key ssh.PublicKey) error {
	f, err := os.OpenFile(filepath.Join(l.Dir, "authorized_keys"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err = f.Write(ssh.MarshalAuthorizedKey(key)); err != nil {
		return err
	}
	for _, n := range l.Nodes {
		if n.Dropbear {
			if err := l.writeDropbearKeys(n); err != nil {
				return err
			}
		}
	}
	return nil
}

// WriteInventory writes a hosts.yaml for the given nodes.
func (l *Lab) WriteInventory(path string, nodes []*Node) error {
	var b strings.Builder
	user := "root"
	if l.SudoUser != "" {
		user = l.SudoUser
	}
	fmt.Fprintf(&b, "defaults:\n  user: %s\n  port: 22\n  identity_file: %s\nnodes:\n", user, l.IdentityPath())
	for _, n := range nodes {
		if n.Addr6.IsValid() {
			fmt.Fprintf(&b, "  - name: %s\n    address: %s\n    internal_ips: [%s, %s]\n    pod_cidrs: [%s, %s]\n",
				n.Name, n.Addr, n.Addr, n.Addr6, n.PodCIDR, n.PodCIDR6)
			continue
		}
		fmt.Fprintf(&b, "  - name: %s\n    address: %s\n    pod_cidr: %s\n", n.Name, n.Addr, n.PodCIDR)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// Down kills every process in the lab's namespaces, deletes them and the
// lab's folder. It carries on past errors and returns them all.
func (l *Lab) Down() error {
	// Bounded per namespace, not in all: 3,000 nodes take about six
	// minutes to delete on two cores, and a lab cut short leaves its
	// sshd running.
	ctx := context.Background()
	namespaces := []string{l.Bastion}
	if l.Jump != nil {
		namespaces = append(namespaces, l.Jump.NS)
	}
	for _, n := range l.Nodes {
		namespaces = append(namespaces, n.NS)
	}
	namespaces = append(namespaces, l.Bridge)
	var mu sync.Mutex
	var errs []error
	var g errgroup.Group
	g.SetLimit(16)
	for _, ns := range namespaces {
		g.Go(func() error {
			ctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			if err := DeleteNamespace(ctx, ns); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait()
	if l.Dir != "" && os.Getenv("KEEP_LAB_DIR") == "" {
		if err := os.RemoveAll(l.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// DeleteNamespace kills every process in a namespace and deletes it. A
// process left behind would keep the deleted namespace alive as a ghost
// that later tests could still reach.
func DeleteNamespace(ctx context.Context, ns string) error {
	if _, err := os.Stat(filepath.Join("/run/netns", ns)); err != nil {
		return nil
	}
	if err := killNamespace(ctx, ns); err != nil {
		return err
	}
	return run(ctx, "ip", "netns", "del", ns)
}

func killNamespace(ctx context.Context, ns string) error {
	for attempt := 0; attempt < 50; attempt++ {
		out, err := exec.CommandContext(ctx, "ip", "netns", "pids", ns).Output()
		if err != nil {
			return fmt.Errorf("lab: ip netns pids %s: %w", ns, err)
		}
		pids := strings.Fields(string(out))
		if len(pids) == 0 {
			return nil
		}
		for _, p := range pids {
			if pid, err := strconv.Atoi(p); err == nil {
				_ = killPID(pid)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("lab: processes in %s survive SIGKILL", ns)
}

// ExecSFTP is the first line of a ForceCommand script that lets SFTP
// sessions (routepush's locks and run records) through unchanged: sshd
// gives a forced command the subsystem's configured command as
// SSH_ORIGINAL_COMMAND.
const ExecSFTP = `case "$SSH_ORIGINAL_COMMAND" in */sftp-server|internal-sftp|sftp) exec /usr/lib/openssh/sftp-server ;; esac`
