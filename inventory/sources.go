package inventory

import "path/filepath"

// Sources names what a read of the inventory at path depends on: the file
// itself and, beside an Ansible inventory, its group_vars/ and host_vars/
// folders, whether they exist or not (one created later counts). Every
// file a read opens is the inventory file or in one of those folders, so
// a watcher that looks at them all (the folders walked whole) sees every
// change that may change what a read returns.
func Sources(path string) []string {
	f, _, err := detect(path)
	if err == nil && f == formatRoutepush {
		return []string{path}
	}
	dir := filepath.Dir(path)
	return []string{path, filepath.Join(dir, "group_vars"), filepath.Join(dir, "host_vars")}
}
