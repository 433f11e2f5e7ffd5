package route

import "testing"

// SizeOf never counts fewer routes or values than a parse makes.
func TestSizeOfBoundsTheParse(t *testing.T) {
	js := []byte(`[{"type":"unicast","dst":"10.0.0.0/24","gateway":"198.18.0.10","dev":"eth0","protocol":"114","scope":"global","flags":[]},` +
		`{"dst":"10.0.1.0/24","protocol":"114","metrics":[{"mtu":1400}],"nexthops":[{"gateway":"198.18.0.11","dev":"eth0","weight":1,"flags":[]},{"gateway":"198.18.0.12","dev":"eth0","weight":1,"flags":[]}]}]`)
	routes, err := ParseJSON(js, IPv4)
	if err != nil {
		t.Fatal(err)
	}
	if s := SizeOf(js, false); s.Routes < len(routes) || s.Values < 20 {
		t.Errorf("JSON: %+v for %d routes", s, len(routes))
	}
	txt := []byte("unicast 10.0.0.0/24 via 198.18.0.10 dev eth0 proto 114 scope global\n10.0.1.0/24 proto 114\n\tnexthop via 198.18.0.11 dev eth0 weight 1\n")
	routes, err = ParseText(txt, IPv4)
	if err != nil {
		t.Fatal(err)
	}
	if s := SizeOf(txt, true); s.Routes < len(routes)+1 || s.Values < 20 {
		t.Errorf("text: %+v for %d routes", s, len(routes))
	}
}
