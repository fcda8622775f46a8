// Package netboot is `make bench`'s side-by-side of the gate's netboot
// path: kiln's TFTP and HTTP servers (the pxe/tftp and pxe/httpd code that
// kiln gate serve runs) against the Debian servers a user would otherwise
// pick (tftpd-hpa, dnsmasq, nginx), the same client fetching the same file
// across a veth pair between two network namespaces at MTU 1500, in
// alternating rounds. The namespaces and the veth are made here and
// removed at the end; nothing touches the host's own network.
package netboot

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Net is two namespaces joined by a veth pair: the server's side and the
// client's.
type Net struct {
	Server, Client           string // namespace names
	ServerIface, ClientIface string // each end of the veth
	ServerAddr, ClientAddr   string // IPv4 in 10.77.0.0/16, no prefix
}

// NewNet creates the namespaces and the veth (MTU 1500), named after
// this process so that two runs do not collide.
func NewNet(ctx context.Context) (*Net, error) {
	id := fmt.Sprintf("kb%d", os.Getpid())
	n := &Net{Server: id + "s", Client: id + "c", ServerIface: id + "a", ClientIface: id + "b", ServerAddr: "10.77.0.1", ClientAddr: "10.77.0.2"}
	steps := [][]string{
		{"netns", "add", n.Server},
		{"netns", "add", n.Client},
		{"link", "add", id + "a", "mtu", "1500", "netns", n.Server, "type", "veth", "peer", "name", id + "b", "mtu", "1500", "netns", n.Client},
		{"-n", n.Server, "addr", "add", n.ServerAddr + "/16", "dev", id + "a"},
		{"-n", n.Client, "addr", "add", n.ClientAddr + "/16", "dev", id + "b"},
		{"-n", n.Server, "link", "set", "lo", "up"},
		{"-n", n.Client, "link", "set", "lo", "up"},
		{"-n", n.Server, "link", "set", id + "a", "up"},
		{"-n", n.Client, "link", "set", id + "b", "up"},
	}
	for _, s := range steps {
		if out, err := exec.CommandContext(ctx, "ip", s...).CombinedOutput(); err != nil {
			n.Close()
			return nil, fmt.Errorf("ip %s: %w: %s", strings.Join(s, " "), err, out)
		}
	}
	return n, nil
}

// Close removes both namespaces, and the veth with them.
func (n *Net) Close() error {
	var first error
	for _, ns := range []string{n.Server, n.Client} {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil && first == nil && !strings.Contains(string(out), "No such file") {
			first = fmt.Errorf("ip netns del %s: %w: %s", ns, err, out)
		}
	}
	return first
}

// InServer is a command run in the server's namespace.
func (n *Net) InServer(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Server, name}, args...)...)
}

// InClient is a command run in the client's namespace.
func (n *Net) InClient(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Client, name}, args...)...)
}
