package pxe

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/client4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/pin/tftp/v3"
	"golang.org/x/sys/unix"

	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/pxe/dhcp"
	"github.com/kilnlab/kiln/pxe/internal/fakebundle"

	"github.com/kilnlab/kiln/internal/roottest"
)

// The integration test runs the real server (a re-exec of this test binary
// under `ip netns exec`) in one network namespace and a PXE client in
// another, joined by a veth pair. Both namespaces are created and removed
// by the test; nothing touches the host's network.

const helperEnv = "KILN_PXE_NETNS_HELPER"

// TestNetnsServerHelper is the server process; it does nothing unless
// started by TestNetnsProxy.
func TestNetnsServerHelper(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		t.Skip("helper process of TestNetnsProxy")
	}
	var p plan.Plan
	b, err := os.ReadFile(os.Getenv("KILN_PXE_PLAN"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	s, err := New(Config{
		Interface: "veth0", Plan: &p, BundleDir: os.Getenv("KILN_PXE_BUNDLE"), StateDir: os.Getenv("KILN_PXE_STATE"),
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// serverLog collects the helper's log lines.
type serverLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *serverLog) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, s)
}

func (l *serverLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func TestNetnsProxy(t *testing.T) {
	roottest.Need(t, "netns tests")
	if _, err := exec.LookPath("ip"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip("no ip(8)")
	}
	srvNS := fmt.Sprintf("kpxe-%d-s", os.Getpid())
	cliNS := fmt.Sprintf("kpxe-%d-c", os.Getpid())
	run(t, "ip", "netns", "add", srvNS)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", srvNS).Run() })
	run(t, "ip", "netns", "add", cliNS)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", cliNS).Run() })
	run(t, "ip", "-n", srvNS, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1", "netns", cliNS)
	run(t, "ip", "-n", cliNS, "link", "set", "veth1", "address", "52:54:00:00:01:02")
	run(t, "ip", "-n", srvNS, "addr", "add", "10.77.0.1/24", "dev", "veth0")
	run(t, "ip", "-n", cliNS, "addr", "add", "10.77.0.12/24", "dev", "veth1")
	for _, ns := range []string{srvNS, cliNS} {
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	run(t, "ip", "-n", srvNS, "link", "set", "veth0", "up")
	run(t, "ip", "-n", cliNS, "link", "set", "veth1", "up")

	dir := t.TempDir()
	bundle := dir + "/bundle"
	fakebundle.Write(t, bundle)
	planPath := dir + "/plan.json"
	b, _ := json.Marshal(testPlan())
	if err := os.WriteFile(planPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", srvNS, exe, "-test.run=^TestNetnsServerHelper$", "-test.v")
	cmd.Env = append(os.Environ(), helperEnv+"=1", "KILN_PXE_PLAN="+planPath, "KILN_PXE_BUNDLE="+bundle, "KILN_PXE_STATE="+dir+"/state")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cmd.Stdout = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	seen := &serverLog{}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("server log:\n%s\n%s", seen, logs.String())
		}
	})
	// Wait for the server to have its sockets (a hang bound, not a timing
	// assertion).
	ready := false
	for !ready {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("server exited before it was up")
			}
			seen.add(l)
			ready = strings.Contains(l, "netboot service up")
		case <-time.After(60 * time.Second):
			t.Fatal("server not up after 60s")
		}
	}
	go func() {
		for l := range lines {
			seen.add(l)
		}
	}()

	t.Run("second server refused", func(t *testing.T) {
		err := roottest.InNetns(srvNS, func() error {
			c, err := dhcp.Listen(context.Background(), "veth0", 67)
			if err == nil {
				c.Close()
			}
			return err
		})
		if !errors.Is(err, dhcp.ErrPortInUse) {
			t.Errorf("a second server on 67: %v, want ErrPortInUse", err)
		}
	})

	pxeMods := []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)),
	}
	t.Run("proxy offer on 67", func(t *testing.T) {
		offer, err := discover(t, cliNS, "52:54:00:00:01:02", pxeMods, 10*time.Second)
		if err != nil {
			t.Fatalf("exchange: %v", err)
		}
		checkProxyReply(t, offer, dhcpv4.MessageTypeOffer)
	})

	t.Run("proxy ack on 4011", func(t *testing.T) {
		var ack *dhcpv4.DHCPv4
		err := roottest.InNetns(cliNS, func() error {
			conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 77, 0, 12), Port: 68})
			if err != nil {
				return err
			}
			defer conn.Close()
			mac, _ := net.ParseMAC("52:54:00:00:01:02")
			req, err := dhcpv4.New(append([]dhcpv4.Modifier{
				dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
				dhcpv4.WithClientIP(net.IPv4(10, 77, 0, 12)),
			}, pxeMods...)...)
			if err != nil {
				return err
			}
			if _, err := conn.WriteToUDP(req.ToBytes(), &net.UDPAddr{IP: net.IPv4(10, 77, 0, 1), Port: 4011}); err != nil {
				return err
			}
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 1500)
			n, _, err := conn.ReadFromUDP(buf)
			if err != nil {
				return err
			}
			ack, err = dhcpv4.FromBytes(buf[:n])
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		checkProxyReply(t, ack, dhcpv4.MessageTypeAck)
	})

	t.Run("unknown mac gets nothing", func(t *testing.T) {
		_, err := discover(t, cliNS, "02:00:00:00:99:99", pxeMods, 2*time.Second)
		if err == nil {
			t.Fatal("the gate answered a MAC not in the plan")
		}
		// The refusal is logged, scoped to the packet (the server logs
		// before the client's wait ends; the bound only covers a hang).
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(seen.String(), "mac=02:00:00:00:99:99") && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if out := seen.String(); !strings.Contains(out, "not in the plan") || !strings.Contains(out, "mac=02:00:00:00:99:99") {
			t.Error("no log line for the unknown MAC")
		}
	})

	t.Run("tftp", func(t *testing.T) {
		var got bytes.Buffer
		err := roottest.InNetns(cliNS, func() error {
			c, err := tftp.NewClient("10.77.0.1:69")
			if err != nil {
				return err
			}
			c.SetTimeout(5 * time.Second)
			c.SetBlockSize(1468)
			wt, err := c.Receive("undionly.kpxe", "octet")
			if err != nil {
				return err
			}
			_, err = wt.WriteTo(&got)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if want := fakebundle.Content("tftp/undionly.kpxe"); !bytes.Equal(got.Bytes(), want) {
			t.Errorf("tftp: got %d bytes, want %d", got.Len(), len(want))
		}
	})
}

// discover broadcasts a DHCPDISCOVER from mac on veth1 in ns, as
// client4 does, and waits for an offer.
func discover(t *testing.T, ns, mac string, mods []dhcpv4.Modifier, wait time.Duration) (*dhcpv4.DHCPv4, error) {
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	var offer *dhcpv4.DHCPv4
	err = roottest.InNetns(ns, func() error {
		sfd, err := client4.MakeBroadcastSocket("veth1")
		if err != nil {
			return err
		}
		defer unix.Close(sfd)
		rfd, err := client4.MakeListeningSocket("veth1")
		if err != nil {
			return err
		}
		defer unix.Close(rfd)
		disc, err := dhcpv4.NewDiscovery(hw, mods...)
		if err != nil {
			return err
		}
		c := client4.NewClient()
		c.ReadTimeout = wait
		offer, err = c.SendReceive(sfd, rfd, disc, dhcpv4.MessageTypeOffer)
		return err
	})
	return offer, err
}

func checkProxyReply(t *testing.T, r *dhcpv4.DHCPv4, mt dhcpv4.MessageType) {
	t.Helper()
	if r.MessageType() != mt {
		t.Errorf("type %s, want %s", r.MessageType(), mt)
	}
	if !r.YourIPAddr.IsUnspecified() {
		t.Errorf("proxy reply carries an address: yiaddr %s", r.YourIPAddr)
	}
	if !r.ServerIPAddr.Equal(net.IPv4(10, 77, 0, 1)) {
		t.Errorf("siaddr %s, want 10.77.0.1", r.ServerIPAddr)
	}
	if r.BootFileName != "undionly.kpxe" || r.BootFileNameOption() != "undionly.kpxe" {
		t.Errorf("boot file %q / option 67 %q, want undionly.kpxe in both", r.BootFileName, r.BootFileNameOption())
	}
	if r.ClassIdentifier() != "PXEClient" {
		t.Errorf("option 60 %q", r.ClassIdentifier())
	}
	if o43 := r.GetOneOption(dhcpv4.OptionVendorSpecificInformation); !bytes.Equal(o43, []byte{6, 1, 8, 255}) {
		t.Errorf("option 43 %v", o43)
	}
}
