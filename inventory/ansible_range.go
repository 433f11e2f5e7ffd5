package inventory

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// maxAnsibleHosts is the most hosts an Ansible inventory may name. A
// range expands before anything else is checked: "n[00000000:99999999]"
// is 40 bytes and 10^8 hosts, which would exhaust the memory. No fleet
// routepush serves is near it. A host may be listed in many groups, so
// the entries, counted before expanding, may be more (maxHostEntries);
// the distinct hosts are counted once read (readAnsible).
const (
	maxAnsibleHosts = 10000
	maxHostEntries  = 10 * maxAnsibleHosts
)

// hostRange is one [start:end] or [start:end:step] of a host pattern.
var hostRange = regexp.MustCompile(`\[([^\]]*)\]`)

// countHosts counts the hosts a pattern (node[01:20], web-[a:c]:2222)
// names without expanding it, and adds them to the inventory's count,
// refusing the pattern once that passes maxAnsibleHosts. It also refuses
// ranges aini cannot expand safely (a step of 0 divides by zero in it).
func (inv *ansibleInventory) countHosts(pattern string) error {
	n := int64(1)
	for _, m := range hostRange.FindAllStringSubmatch(pattern, -1) {
		c, err := rangeSize(m[1])
		if err != nil {
			return fmt.Errorf("host %q: range [%s]: %w", pattern, m[1], err)
		}
		n *= c
		if n > maxAnsibleHosts {
			break
		}
	}
	if n > maxAnsibleHosts {
		return fmt.Errorf("host %q: names more than %d hosts; routepush refuses it rather than expand it", pattern, maxAnsibleHosts)
	}
	inv.hostCount += n
	if inv.hostCount > maxHostEntries {
		return fmt.Errorf("host %q: the inventory lists more than %d hosts in its groups; routepush refuses it rather than expand it", pattern, maxHostEntries)
	}
	return nil
}

// rangeSize is the number of names a range gives: numbers (01:20, :20,
// 1:20:2) or single letters (a:c).
func rangeSize(r string) (int64, error) {
	bounds := strings.Split(r, ":")
	if len(bounds) < 2 || len(bounds) > 3 {
		return 1, nil // not a range: aini says what is wrong with it
	}
	step := int64(1)
	if len(bounds) == 3 {
		s, err := strconv.ParseInt(bounds[2], 10, 32)
		if err != nil || s < 1 {
			return 0, fmt.Errorf("the step %q is not a positive number", bounds[2])
		}
		step = s
	}
	begin, end := bounds[0], bounds[1]
	if begin == "" {
		begin = "0"
	}
	digits := func(s string) bool { return s != "" && strings.Trim(s, "0123456789") == "" }
	if digits(begin) && digits(end) {
		b, errB := strconv.ParseUint(begin, 10, 32)
		e, errE := strconv.ParseUint(end, 10, 32)
		switch {
		case errB != nil || errE != nil:
			return 0, fmt.Errorf("a bound is not a number below 2^32")
		case e < b:
			return 0, fmt.Errorf("ends before it starts")
		}
		return int64(e-b)/step + 1, nil
	}
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	if len(begin) == 1 && len(end) == 1 {
		b, e := strings.IndexByte(letters, begin[0]), strings.IndexByte(letters, end[0])
		if b >= 0 && e >= b {
			return int64(e-b)/step + 1, nil
		}
	}
	return 0, fmt.Errorf("want numbers (01:20) or single letters (a:c), in order")
}

// countINIHosts counts the hosts of an INI inventory's host lines before
// aini expands them (countHosts).
func (inv *ansibleInventory) countINIHosts(data []byte) error {
	for _, host := range iniHostLines(data) {
		if err := inv.countHosts(host); err != nil {
			return err
		}
	}
	return nil
}
