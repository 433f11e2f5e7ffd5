#!/bin/sh
# Installs what routepush's lab, tests and demo use, if it is missing:
# OpenSSH's server (one sshd per lab node) and client (ssh-agent, ssh-keygen),
# iproute2, ping, sudo (nodes that log in as a user who becomes root), route
# (net-tools, as the Ansible playbook used), etcd
# (behind the test kube-apiserver, which the tests build themselves),
# Ansible (the inventory tests compare routepush's reading of Ansible
# inventories with ansible-inventory's), Dropbear (dropbear-bin: lab nodes
# that run it instead of sshd), BusyBox (nodes whose ip is BusyBox's) and
# staticcheck.
# Safe to run again: it installs nothing that is already there.
set -eu

need=""
[ -x /usr/sbin/sshd ] || need="$need openssh-server"
command -v ssh >/dev/null 2>&1 || need="$need openssh-client"
command -v ip >/dev/null 2>&1 || need="$need iproute2"
command -v ping >/dev/null 2>&1 || need="$need iputils-ping"
command -v etcd >/dev/null 2>&1 || need="$need etcd-server"
command -v sudo >/dev/null 2>&1 || need="$need sudo"
# net-tools' route: the tests reproduce what the Ansible playbook left behind.
[ -x /usr/sbin/route ] || need="$need net-tools"
# ansible-inventory: what routepush's Ansible inventory reader is checked
# against (inventory/ansible_test.go); ansible-playbook: make bench's rival.
command -v ansible-inventory >/dev/null 2>&1 && command -v ansible-playbook >/dev/null 2>&1 || need="$need ansible"
[ -x /usr/sbin/dropbear ] || need="$need dropbear-bin"
# nft: the preflight and probe tests' FORWARD policy and dropped pings;
# iptables: preflight's reading where a node has no nft.
[ -x /usr/sbin/nft ] || need="$need nftables"
[ -x /usr/sbin/iptables ] || need="$need iptables"
command -v busybox >/dev/null 2>&1 || need="$need busybox"
# `install-deps.sh bench`: also what make bench races routepush against.
if [ "${1:-}" = bench ]; then
	command -v xargs >/dev/null 2>&1 || need="$need findutils"
fi

if [ -n "$need" ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "install-deps: need root to install:$need" >&2
		exit 1
	fi
	echo "install-deps: installing$need"
	apt-get update -qq
	# policy-rc.d keeps the packages from starting an sshd or etcd on the host.
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod +x /usr/sbin/policy-rc.d
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
	rm -f /usr/sbin/policy-rc.d
fi

# Debian's Dropbear serves SFTP by running /usr/lib/sftp-server, which no
# package ships: the lab's Dropbear nodes with SFTP get OpenSSH's there
# (those without have it hidden in their own mount namespace).
if [ ! -e /usr/lib/sftp-server ] && [ -x /usr/lib/openssh/sftp-server ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "install-deps: need root to link /usr/lib/sftp-server to openssh/sftp-server" >&2
		exit 1
	fi
	echo "install-deps: linking /usr/lib/sftp-server to openssh/sftp-server (Dropbear's SFTP server)"
	ln -s openssh/sftp-server /usr/lib/sftp-server
fi

STATICCHECK_VERSION=v0.8.2
gobin="$(go env GOPATH)/bin"
if ! "$gobin/staticcheck" -version 2>/dev/null | grep -q "${STATICCHECK_VERSION#v}"; then
	echo "install-deps: installing staticcheck $STATICCHECK_VERSION"
	GOFLAGS= go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
fi
