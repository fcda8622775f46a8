package appliance

import (
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/kilnlab/kiln/internal/roottest"
)

// linuxNoHost is the real System but for the host name: a network
// namespace does not isolate it, and the test must not rename the host.
type linuxNoHost struct{ Linux }

func (linuxNoHost) Sethostname(string) error { return nil }

// TestNetworkNetns runs the network phase's tasks with the real netlink
// System in a network namespace of its own, on a veth pair it creates,
// twice (a retried phase must not fail on what the first try did).
func TestNetworkNetns(t *testing.T) {
	roottest.Need(t, "the netns test")
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New() // this thread is in it now
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer func() {
		// Only a thread back in the host's namespace may serve other
		// goroutines; otherwise it dies with this one.
		if err := netns.Set(orig); err == nil {
			runtime.UnlockOSThread()
		}
		ns.Close() // the last reference: the namespace and its links go
	}()

	mac, _ := net.ParseMAC("52:54:00:aa:00:01")
	la := netlink.NewLinkAttrs()
	la.Name, la.HardwareAddr = "lab0", mac
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "peer0"}); err != nil {
		t.Fatal(err)
	}
	defer netlink.LinkDel(&netlink.Veth{LinkAttrs: la})
	peer, err := netlink.LinkByName("peer0")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(peer); err != nil {
		t.Fatal(err)
	}

	root := fakeGate(t)
	a, err := New(Config{Root: root, System: linuxNoHost{}, Log: newDiscardLog()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := a.readPayload(ctx); err != nil {
		t.Fatal(err)
	}
	var network phase
	for _, p := range a.phases() {
		if p.name == "network" {
			network = p
		}
	}
	for try := range 2 {
		if err := a.tryPhase(ctx, network); err != nil {
			t.Fatalf("try %d: %v", try, err)
		}
	}

	if a.iface != "lab0" {
		t.Errorf("found %q by MAC, want lab0", a.iface)
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil || lo.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("lo not up: %v", err)
	}
	link, err := netlink.LinkByName("lab0")
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil || len(addrs) != 1 || addrs[0].IPNet.String() != "10.0.0.2/24" {
		t.Errorf("lab0 addresses %v, %v; want 10.0.0.2/24 once", addrs, err)
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: 254}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	defaults := 0
	for _, r := range routes {
		if r.Dst == nil || r.Dst.String() == "0.0.0.0/0" {
			defaults++
			if r.Gw.String() != "10.0.0.1" || r.LinkIndex != link.Attrs().Index {
				t.Errorf("default route %v, want via 10.0.0.1 dev lab0", r)
			}
		}
	}
	if defaults != 1 {
		t.Errorf("%d default routes in %v, want 1", defaults, routes)
	}
}

// TestLinuxMounted checks the real Mounted and Mknod on a tmpfs the test
// mounts and unmounts.
func TestLinuxMounted(t *testing.T) {
	roottest.Need(t, "the mount test")
	dir := filepath.Join(t.TempDir(), "perm")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var sys Linux
	if ok, err := sys.Mounted(dir); ok || err != nil {
		t.Fatalf("Mounted before mount: %v, %v", ok, err)
	}
	if err := sys.Mount("tmpfs", dir, "tmpfs", unix.MS_NOATIME, "size=1m"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	if ok, err := sys.Mounted(dir); !ok || err != nil {
		t.Errorf("Mounted after mount: %v, %v", ok, err)
	}
	// A block node like the ones made for partitions devtmpfs lacks
	// (loop0's numbers: 7:0).
	node := filepath.Join(dir, "dev", "loop0")
	if err := sys.Mknod(node, 7, 0); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(node, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK || unix.Major(st.Rdev) != 7 {
		t.Errorf("node %+v, %v", st, err)
	}
	if err := sys.Mknod(node, 7, 0); err != nil {
		t.Errorf("Mknod of an existing node: %v", err)
	}
}
