package qemutests

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/pxe"
	"github.com/kilnlab/kiln/pxe/api"
	"github.com/kilnlab/kiln/pxe/httpd"
	"github.com/kilnlab/kiln/qemu-tests/lab"
)

// The soak: the gate VM (its own SD image, proxy mode beside the ISP box)
// takes a flood of netboot requests from machines it does not know, each
// with its own MAC, as a busy LAN or a broken PXE ROM would send: DHCP
// discovers of PXE clients, TFTP reads of the iPXE binary aborted after
// the size probe as PXE ROMs do, and HTTP requests for iPXE scripts and
// install API calls that it must refuse. Its memory and its /perm must
// stay flat (logs rotated, refusals bounded), and it must then still
// install a real machine over the network.

const (
	soakEnv      = "KILN_SOAK_REQUESTS"
	soakRequests = 10200
	soakWorkers  = 4
	// soakSamples is how many times the gate's footprint is read during
	// the soak.
	soakSamples = 6
)

// soakLoad counts what the soak sent and what came back.
type soakLoad struct {
	dhcp, tftp, http          atomic.Int64 // requests sent
	tftpAnswered, httpAnswers atomic.Int64
	refused                   atomic.Int64 // HTTP 4xx answers (refusals)
}

func TestGateSoak(t *testing.T) {
	requireLab(t)
	if os.Getenv("KILN_E2E") != "1" {
		t.Skip("the gate soak is make e2e's (KILN_E2E=1)")
	}
	n := soakRequests
	if s := os.Getenv(soakEnv); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 3*soakSamples {
			t.Fatalf("%s=%q: want a number of requests, at least %d", soakEnv, s, 3*soakSamples)
		}
		n = v
	}
	ctx := testContext(t, machineDeadline+30*time.Minute)
	l, p := startLab(t, ctx, profiles.DHCPProxy, gateVM)
	gate := net.ParseIP(p.Gate.Address).To4()

	before := gateStatus(t, l).Gate.GateStats
	t.Logf("soak: %d requests, %d workers; gate before: kiln RSS %s, /perm %s used",
		n, soakWorkers, kib(before.KilnRSSBytes), kib(before.StateFSUsedBytes))
	var load soakLoad
	var samples []httpd.GateStats
	start := time.Now()
	next := make(chan int)
	var wg sync.WaitGroup
	errs := make(chan error, soakWorkers)
	for w := range soakWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := soakWorker(ctx, l.Net, gate, w, next, &load); err != nil {
				errs <- err
			}
		}()
	}
	for i := range n {
		if i > 0 && i%(n/soakSamples) == 0 {
			samples = append(samples, gateStatus(t, l).Gate.GateStats)
		}
		select {
		case next <- i:
		case err := <-errs:
			t.Fatalf("soak: %v", err)
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("soak: %v", err)
	}
	took := time.Since(start)
	st := gateStatus(t, l)
	after := st.Gate.GateStats
	samples = append(samples, after)
	t.Logf("soak: %d DHCP, %d TFTP (%d answered), %d HTTP (%d answered, %d refused) in %s",
		load.dhcp.Load(), load.tftp.Load(), load.tftpAnswered.Load(), load.http.Load(), load.httpAnswers.Load(), load.refused.Load(), took.Round(time.Second))
	for i, s := range samples {
		t.Logf("  sample %d: kiln RSS %s, /perm %s used of %s", i+1, kib(s.KilnRSSBytes), kib(s.StateFSUsedBytes), kib(s.StateFSTotalBytes))
	}
	// Flat: from the first sample (the gate warmed up) to the end, RSS
	// within 8 MiB; /perm grows by its log only, which rotation bounds.
	if d := int64(after.KilnRSSBytes) - int64(samples[0].KilnRSSBytes); d > 8<<20 {
		t.Errorf("gate RSS grew %s during the soak", kib(uint64(d)))
	}
	// /perm: its log grows with time (at most a few lines a minute per
	// kind of refusal), not with the requests, and rotation bounds it.
	grew := int64(after.StateFSUsedBytes) - int64(samples[0].StateFSUsedBytes)
	limit := int64(256<<10) + int64(took/time.Minute+1)*(64<<10)
	t.Logf("/perm grew %d KiB from the first sample to the end (%d requests; limit %d KiB for %s)",
		grew>>10, n-n/soakSamples, limit>>10, took.Round(time.Second))
	if grew > limit {
		t.Errorf("/perm grew %d KiB during the soak: the gate logs per request", grew>>10)
	}
	if got := load.tftpAnswered.Load(); got < load.tftp.Load()*99/100 {
		t.Errorf("TFTP: %d of %d size probes answered", got, load.tftp.Load())
	}
	if got := load.httpAnswers.Load(); got != load.http.Load() {
		t.Errorf("HTTP: %d of %d requests answered", got, load.http.Load())
	}
	if len(st.Refused) > 20 {
		t.Errorf("the status page keeps %d refusals: unbounded", len(st.Refused))
	}
	t.Logf("the status page keeps %d refusals (newest: %s)", len(st.Refused), newestRefusal(st))

	// And it still installs a real machine.
	m := machine(t, p, "node-a")
	r, vm := l.InstallUp(ctx, m, lab.ConfigFor(p.Lab, m))
	if r.Err != nil {
		t.Fatalf("install after the soak: %v", r.Err)
	}
	vm.Stop()
	t.Logf("after the soak: %s installed in %s, role OS booted %s after power-on", m.Name, r.Install.Round(time.Second), r.Booted.Round(time.Second))
	checkGateStatus(t, l, m.Name, "installed")
}

func kib(b uint64) string { return fmt.Sprintf("%d KiB", b>>10) }

func newestRefusal(st httpd.Status) string {
	if len(st.Refused) == 0 {
		return "none"
	}
	r := st.Refused[0]
	return fmt.Sprintf("%s %s %s: %s", r.Peer, r.Method, r.Path, r.Why)
}

// soakWorker sends the requests numbered on next: i%3 picks DHCP, TFTP or
// HTTP, i the MAC. Its sockets are opened inside the lab's namespace.
func soakWorker(ctx context.Context, n *lab.Network, gate net.IP, w int, next <-chan int, load *soakLoad) error {
	var udp *net.UDPConn
	var hc net.Conn
	var br *bufio.Reader
	dial := func() error {
		return n.Do(func() error {
			var err error
			if udp == nil {
				if udp, err = net.ListenUDP("udp4", nil); err != nil {
					return err
				}
			}
			if hc == nil {
				hc, err = net.DialTimeout("tcp", net.JoinHostPort(gate.String(), strconv.Itoa(pxe.DefaultHTTPPort)), 10*time.Second)
				br = bufio.NewReader(hc)
			}
			return err
		})
	}
	if err := dial(); err != nil {
		return err
	}
	defer func() {
		udp.Close()
		if hc != nil {
			hc.Close()
		}
	}()
	for i := range next {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		mac := net.HardwareAddr{0x02, 0x6b, byte(w), byte(i >> 16), byte(i >> 8), byte(i)}
		switch i % 3 {
		case 0:
			if err := soakDHCP(udp, gate, mac); err != nil {
				return err
			}
			load.dhcp.Add(1)
		case 1:
			ok, err := soakTFTP(ctx, n, gate)
			if err != nil {
				return err
			}
			load.tftp.Add(1)
			if ok {
				load.tftpAnswered.Add(1)
			}
		case 2:
			load.http.Add(1)
			code, err := soakHTTP(hc, br, gate, mac, i)
			if err != nil {
				// The gate may close an idle or refused connection:
				// dial again once and retry.
				hc.Close()
				hc = nil
				if err := dial(); err != nil {
					return err
				}
				if code, err = soakHTTP(hc, br, gate, mac, i); err != nil {
					return fmt.Errorf("http: %w", err)
				}
			}
			load.httpAnswers.Add(1)
			if code >= 400 && code < 500 {
				load.refused.Add(1)
			}
		}
	}
	return nil
}

// soakDHCP sends a BIOS PXE client's DISCOVER for mac to the gate.
func soakDHCP(c *net.UDPConn, gate net.IP, mac net.HardwareAddr) error {
	d, err := dhcpv4.NewDiscovery(mac,
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)),
		dhcpv4.WithBroadcast(true))
	if err != nil {
		return err
	}
	_, err = c.WriteToUDP(d.ToBytes(), &net.UDPAddr{IP: gate, Port: 67})
	return err
}

// soakTFTP probes undionly.kpxe's size as a PXE ROM does (RRQ with tsize,
// then an error to stop at the OACK). Each probe has its own port, as a
// ROM's would, opened inside the namespace. It says whether the gate
// answered.
func soakTFTP(ctx context.Context, n *lab.Network, gate net.IP) (bool, error) {
	var c *net.UDPConn
	if err := n.Do(func() error {
		var err error
		c, err = net.ListenUDP("udp4", nil)
		return err
	}); err != nil {
		return false, err
	}
	defer c.Close()
	rrq := []byte{0, 1}
	for _, s := range []string{"undionly.kpxe", "octet", "tsize", "0", "blksize", "1468"} {
		rrq = append(append(rrq, s...), 0)
	}
	if _, err := c.WriteToUDP(rrq, &net.UDPAddr{IP: gate, Port: 69}); err != nil {
		return false, err
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	k, from, err := c.ReadFromUDP(buf)
	if err != nil {
		return false, nil // unanswered: counted by the caller
	}
	if k >= 2 && (binary.BigEndian.Uint16(buf) == 6 || binary.BigEndian.Uint16(buf) == 3) {
		// OACK or DATA: stop the transfer as a ROM does after the probe.
		_, _ = c.WriteToUDP(append([]byte{0, 5, 0, 0}, "size probe done\x00"...), from)
		return true, nil
	}
	return false, nil
}

// soakHTTP sends one request on the kept-alive connection: the iPXE
// script of an unknown MAC, its install call (refused), or the boot
// script. It returns the status code.
func soakHTTP(c net.Conn, br *bufio.Reader, gate net.IP, mac net.HardwareAddr, i int) (int, error) {
	if c == nil {
		return 0, fmt.Errorf("no connection")
	}
	base := "http://" + net.JoinHostPort(gate.String(), strconv.Itoa(pxe.DefaultHTTPPort))
	path := [...]string{"/ipxe/" + mac.String(), api.PathInstall + mac.String(), "/boot.ipxe"}[(i/3)%3]
	req, err := http.NewRequest("GET", base+path, nil)
	if err != nil {
		return 0, err
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if err := req.Write(c); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, err
	}
	return resp.StatusCode, nil
}
