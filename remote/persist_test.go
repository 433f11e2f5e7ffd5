package remote

import "testing"

func TestManageForeignRoutes(t *testing.T) {
	for _, c := range []struct {
		name  string
		files []string
		want  bool
	}{
		{"default", nil, true},
		{"commented out", []string{"[Network]\n#ManageForeignRoutes=no\n"}, true},
		{"off", []string{"[Network]\nManageForeignRoutes=no\n"}, false},
		{"another section", []string{"[DHCPv4]\nManageForeignRoutes=no\n"}, true},
		{"a later drop-in wins", []string{"[Network]\nManageForeignRoutes=no\n", "[Network]\nManageForeignRoutes = yes\n"}, true},
		{"drop-in turns it off", []string{"[Network]\nSpeedMeter=yes\n", "; ours\n[Network]\nManageForeignRoutes=false\n"}, false},
		{"not a boolean is ignored", []string{"[Network]\nManageForeignRoutes=maybe\n"}, true},
	} {
		var files [][]byte
		for _, f := range c.files {
			files = append(files, []byte(f))
		}
		if got := ManageForeignRoutes(files...); got != c.want {
			t.Errorf("%s: ManageForeignRoutes = %v, want %v", c.name, got, c.want)
		}
	}
}
