package inventory

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ansibleNodes reads an Ansible inventory into nodes, in name order, with
// the problems of single values (each naming the host and the variable).
// failed says which (node, field) already failed, so validation does not
// report them again as missing.
func ansibleNodes(path string, f format, data []byte, opts Options) (*File, []error, map[failedField]bool, error) {
	inv, err := readAnsible(path, f, data)
	if err != nil {
		return nil, nil, nil, err
	}
	groups, names := inv.groupsOf()
	file := &File{Path: path, Groups: groups, Warnings: inv.warnings}
	var errs []error
	failed := map[failedField]bool{}
	warned := map[string][]string{} // warning → hosts
	var warnings []string
	for _, name := range names {
		r := &nodeVars{host: name, vars: inv.hostVars(inv.hosts[name]), opts: opts, failed: map[string]bool{}}
		n := r.node()
		errs = append(errs, r.errs...)
		for _, w := range r.warnings {
			if warned[w] == nil {
				warnings = append(warnings, w)
			}
			warned[w] = addTo(warned[w], name)
		}
		for canon := range r.failed {
			failed[failedField{validName(name), canon}] = true
		}
		_, written := r.oneOfNames(opts.ipVars())
		file.Nodes = append(file.Nodes, n)
		file.ipsWritten = append(file.ipsWritten, written)
		file.addrFrom = append(file.addrFrom, r.addressFrom())
	}
	for _, w := range warnings {
		file.Warnings = append(file.Warnings, fmt.Sprintf("%s (hosts %s)", w, strings.Join(warned[w], ", ")))
	}
	return file, errs, failed, nil
}

type failedField struct{ node, field string }

// addressFrom says where the host's address was set, for messages.
func (r *nodeVars) addressFrom() string {
	for _, name := range []string{"ansible_host", "ansible_ssh_host"} {
		if v, ok := r.vars[name]; ok && v.v != nil {
			return v.from
		}
	}
	return "" // its inventory name, which no other host has
}

// oneOfNames reports which of names the host sets, if any.
func (r *nodeVars) oneOfNames(names []string) (string, bool) {
	for _, n := range names {
		if v, ok := r.vars[n]; ok && v.v != nil {
			return n, true
		}
	}
	return "", false
}

// ansibleValidation keeps the problems validation found that are not
// about a value that already failed to read.
func ansibleValidation(err error, fields fieldNames, failed map[failedField]bool) []error {
	var verr *ValidationError
	if !errors.As(err, &verr) {
		return nil
	}
	canon := map[string]string{fields.address: "address", fields.user: "user", fields.port: "port", fields.internalIP: "internal_ip", fields.podCIDR: "pod_cidr"}
	var out []error
	for _, e := range verr.Errs {
		var fe *FieldError
		if errors.As(e, &fe) && failed[failedField{fe.Node, canon[fe.Field]}] {
			continue
		}
		out = append(out, e)
	}
	return out
}

// loadAnsible reads a whole node table from an Ansible inventory and
// validates it.
func loadAnsible(path string, f format, data []byte, opts Options) (*File, error) {
	file, errs, failed, err := ansibleNodes(path, f, data, opts)
	if err != nil {
		return nil, err
	}
	fields := ansibleFields(opts)
	errs = append(errs, ansibleValidation(validateFrom("inventory "+path, file.Nodes, fields, file.addrFrom), fields, failed)...)
	if len(errs) > 0 {
		return nil, &ValidationError{Source: "inventory " + path, Errs: errs}
	}
	// Beside the API the pod CIDRs are the API's; alone, none at all is
	// most likely a playbook that names the variable otherwise.
	if !slices.ContainsFunc(file.Nodes, func(n Node) bool { return len(n.PodCIDRs) > 0 }) {
		file.Warnings = append(file.Warnings, fmt.Sprintf("no host sets %s: no node is a destination; if the inventory names pod CIDRs otherwise, say which variable with --ansible-pod-cidr-vars", strings.Join(opts.podVars(), " or ")))
	}
	return file, nil
}

// loadAnsibleAccess reads an Ansible inventory for use beside the
// Kubernetes API (File): its hosts' names and how to reach them.
func loadAnsibleAccess(path string, f format, data []byte, opts Options) (*File, error) {
	file, errs, failed, err := ansibleNodes(path, f, data, opts)
	if err != nil {
		return nil, err
	}
	fields := ansibleFields(opts)
	v := &validator{fields: fields}
	for i := range file.Nodes {
		v.identity(i, &file.Nodes[i])
	}
	v.sharedAddresses(file.Nodes, file.addrFrom)
	errs = append(errs, ansibleValidation(&ValidationError{Errs: v.errs}, fields, failed)...)
	if len(errs) > 0 {
		return nil, &ValidationError{Source: "inventory " + path, Errs: errs}
	}
	return file, nil
}
