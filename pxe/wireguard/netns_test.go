package wireguard

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/kilnlab/kiln/image/hosttool/hosttooltest"
	"github.com/kilnlab/kiln/image/secrets"
	"github.com/kilnlab/kiln/profiles"

	"github.com/kilnlab/kiln/internal/roottest"
)

// The tunnel test joins two network namespaces, "gate" and "vps", by a
// veth pair standing for the internet. Up configures the gate's side; the
// VPS's side is configured by wireguard-tools' `wg setconf` from the
// config PeerConfig writes, as a user would on the VPS. Then both ends
// ping each other's tunnel address. Where the kernel has no WireGuard
// (some CI kernels), both interfaces are wireguard-go devices run by a
// re-exec of this test binary inside the namespace: Up still does all
// but creating the link.

const helperEnv = "KILN_WG_USERSPACE_HELPER"

const tunnelProfile = `
name: tunnel
network:
  cidr: 192.168.77.0/24
  gateway: 192.168.77.1
machines:
  - name: gate-1
    role: gate
    board: rpi4
    arch: arm64
    mac: 52:54:00:00:00:0a
    address: 192.168.77.10
    wireguard:
      address: 10.99.0.2/24
      peer:
        endpoint: 10.231.0.2:51820
        address: 10.99.0.1
        allowed_ips: [10.99.0.0/24, 10.98.0.0/16]
        keepalive: 5
`

func TestTunnel(t *testing.T) {
	roottest.Need(t, "netns tests")
	hosttooltest.Need(t, "ip", "wg", "ping")
	id := os.Getpid() % 100000
	gateNS, vpsNS := fmt.Sprintf("kiln-wg-gate-%d", id), fmt.Sprintf("kiln-wg-vps-%d", id)
	// Userspace interfaces' control sockets (/var/run/wireguard/NAME.sock)
	// are shared by all namespaces: the names must be unique on the host.
	gateIf, vpsIf := fmt.Sprintf("kwg%dg", id), fmt.Sprintf("kwg%dv", id)
	for _, ns := range []string{gateNS, vpsNS} {
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	run(t, "ip", "-n", gateNS, "link", "add", "veth0", "type", "veth", "peer", "name", "veth0", "netns", vpsNS)
	for ns, addr := range map[string]string{gateNS: "10.231.0.1/24", vpsNS: "10.231.0.2/24"} {
		run(t, "ip", "-n", ns, "addr", "add", addr, "dev", "veth0")
		run(t, "ip", "-n", ns, "link", "set", "veth0", "up")
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}

	if kernelWireGuard(gateNS) {
		t.Log("kernel WireGuard")
		run(t, "ip", "-n", vpsNS, "link", "add", vpsIf, "type", "wireguard")
	} else {
		t.Log("no WireGuard in this kernel: wireguard-go devices")
		userspaceDevice(t, gateNS, gateIf)
		userspaceDevice(t, vpsNS, vpsIf)
	}

	p, err := profiles.Parse("tunnel.yaml", []byte(tunnelProfile))
	if err != nil {
		t.Fatal(err)
	}
	_, wg, err := Gate(p)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "secrets")
	keys, err := secrets.WireGuard(dir)
	if err != nil {
		t.Fatal(err)
	}

	// The VPS, as its admin would set it up from kiln's output.
	var conf strings.Builder
	if err := PeerConfig(&conf, p, keys); err != nil {
		t.Fatal(err)
	}
	confFile := filepath.Join(t.TempDir(), "vps.conf")
	if err := os.WriteFile(confFile, []byte(stripQuick(conf.String())), 0o600); err != nil {
		t.Fatal(err)
	}
	run(t, "ip", "netns", "exec", vpsNS, "wg", "setconf", vpsIf, confFile)
	run(t, "ip", "-n", vpsNS, "addr", "add", "10.99.0.1/24", "dev", vpsIf)
	run(t, "ip", "-n", vpsNS, "link", "set", vpsIf, "up")

	// The gate, twice: the second Up must converge, not fail on what
	// the first one made.
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	for range 2 {
		err := roottest.InNetns(gateNS, func() error {
			return Up(context.Background(), Config{Interface: gateIf, Tunnel: *wg}, keys.GateView(), log)
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	dump := output(t, "ip", "netns", "exec", gateNS, "wg", "show", gateIf, "dump")
	peer := strings.Fields(strings.Split(strings.TrimSpace(dump), "\n")[1])
	// public-key preshared-key endpoint allowed-ips handshake rx tx keepalive
	if peer[0] != keys.PeerPublic.String() || peer[1] != keys.Preshared.String() ||
		peer[2] != "10.231.0.2:51820" || peer[3] != "10.99.0.0/24,10.98.0.0/16" || peer[7] != "5" {
		t.Errorf("gate's peer (wg show dump) = %q, other than the profile says", peer[2:])
	}
	if routes := output(t, "ip", "-n", gateNS, "route", "show", "dev", gateIf); !strings.Contains(routes, "10.98.0.0/16") {
		t.Errorf("no route to allowed_ips 10.98.0.0/16 through %s:\n%s", gateIf, routes)
	}

	ping(t, gateNS, "10.99.0.1")
	ping(t, vpsNS, "10.99.0.2")
}

// stripQuick drops what only wg-quick understands (as `wg-quick strip`).
func stripQuick(conf string) string {
	return regexp.MustCompile(`(?m)^Address = .*\n`).ReplaceAllString(conf, "")
}

// ping sends one echo request and waits 2 s for the answer. A first packet
// waits for the handshake, which WireGuard completes before it gives up,
// so one try is enough; the retries guard against a slow loaded machine.
func ping(t *testing.T, ns, addr string) {
	t.Helper()
	var out []byte
	var err error
	for range 3 {
		out, err = exec.Command("ip", "netns", "exec", ns, "ping", "-c1", "-W2", addr).CombinedOutput()
		if err == nil {
			return
		}
	}
	t.Errorf("%s: ping %s through the tunnel: %v\n%s", ns, addr, err, out)
}

func kernelWireGuard(ns string) bool {
	if exec.Command("ip", "-n", ns, "link", "add", "kwgprobe", "type", "wireguard").Run() != nil {
		return false
	}
	exec.Command("ip", "-n", ns, "link", "del", "kwgprobe").Run()
	return true
}

// userspaceDevice runs a wireguard-go interface named name in ns, in a
// helper process (sockets belong to the namespace of the thread that
// opens them, and wireguard-go opens them on threads of its own).
func userspaceDevice(t *testing.T, ns, name string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, exe, "-test.run=^TestUserspaceHelper$")
	cmd.Env = append(os.Environ(), helperEnv+"="+name)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if sc.Text() == "ready" {
			go func() { // drain, so the helper never blocks writing
				for sc.Scan() {
				}
			}()
			return
		}
	}
	t.Fatalf("wireguard-go helper for %s in %s stopped before it was ready", name, ns)
}

// TestUserspaceHelper is the wireguard-go helper process of TestTunnel;
// it does nothing unless started by it.
func TestUserspaceHelper(t *testing.T) {
	name := os.Getenv(helperEnv)
	if name == "" {
		t.Skip("helper process of TestTunnel")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	tdev, err := tun.CreateTUN(name, device.DefaultMTU)
	if err != nil {
		t.Fatal(err)
	}
	file, err := ipc.UAPIOpen(name)
	if err != nil {
		t.Fatal(err)
	}
	dev := device.NewDevice(tdev, conn.NewDefaultBind(), device.NewLogger(device.LogLevelError, name+": "))
	defer dev.Close()
	uapi, err := ipc.UAPIListen(name, file)
	if err != nil {
		t.Fatal(err)
	}
	defer uapi.Close()
	go func() {
		for {
			c, err := uapi.Accept()
			if err != nil {
				return
			}
			go dev.IpcHandle(c)
		}
	}()
	fmt.Println("ready")
	<-ctx.Done()
}

func run(t *testing.T, args ...string) {
	t.Helper()
	output(t, args...)
}

func output(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}
