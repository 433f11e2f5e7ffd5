package proxyjump_test

import (
	"fmt"

	"github.com/routepush/routepush/internal/proxyjump"
)

func ExampleParse() {
	hops, err := proxyjump.Parse("admin@bastion:2222,ssh://[2001:db8::1]")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, h := range hops {
		fmt.Printf("user %q host %q port %d\n", h.User, h.Host, h.Port)
	}
	_, err = proxyjump.Parse("bastion;reboot")
	fmt.Println(err)
	// Output:
	// user "admin" host "bastion" port 2222
	// user "" host "2001:db8::1" port 0
	// jump host "bastion;reboot": "bastion;reboot" is neither an IP address nor a host name
}
