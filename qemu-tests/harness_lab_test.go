package qemutests

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kilnlab/kiln/qemu-tests/lab"
)

// TestLabHarness checks the harness's own promises without a kernel: a VM
// that finds nothing to boot is reset by SeaBIOS, relaunched and counted
// until MaxBoots; a Go server runs inside the namespace; Close leaves no
// namespace and no QEMU behind.
func TestLabHarness(t *testing.T) {
	requireLab(t)
	ctx := testContext(t, 5*time.Minute)
	out := outputDir(t)
	n := newNetwork(t, ctx, out)
	_, err := n.StartISP(ctx, lab.ISPConfig{})
	if err != nil {
		t.Fatal(err)
	}

	// kiln's gate will serve like this: listen inside, serve from anywhere.
	var ln net.Listener
	if err := n.Do(func() (err error) {
		ln, err = net.Listen("tcp", n.GateAddr().Addr().String()+":8080")
		return err
	}); err != nil {
		t.Fatalf("listen on the gate address inside the lab: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "gate") })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	// Dial inside Do: net/http would dial from another goroutine, outside.
	var resp *http.Response
	if err := n.Do(func() error {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
		if err != nil {
			return err
		}
		req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/", nil)
		if err := req.Write(c); err != nil {
			return err
		}
		resp, err = http.ReadResponse(bufio.NewReader(c), req)
		return err
	}); err != nil {
		t.Fatalf("GET from inside the lab: %v", err)
	}
	if body, err := io.ReadAll(resp.Body); err != nil || string(body) != "gate" {
		t.Errorf("GET from inside the lab: %q, %v", body, err)
	}
	// Commands run inside the lab too.
	if b, err := n.Command("ip", "-br", "addr", "show", n.Bridge()).CombinedOutput(); err != nil || !strings.Contains(string(b), n.GateAddr().String()) {
		t.Errorf("ip addr inside the lab: %v\n%s", err, b)
	}
	vm, err := n.NewVM(ctx, lab.VMConfig{
		Name: "noboot",
		MAC:  "52:54:00:4b:00:10",
		// SeaBIOS resets at once when nothing boots: each reset ends QEMU
		// (-no-reboot) and the lab relaunches it.
		ExtraArgs: []string{"-boot", "reboot-timeout=0"},
		MaxBoots:  2,
		// Both attachments QEMU must accept: virtio-blk by serial, scsi-hd
		// by WWN (blank: SeaBIOS tries them and gives up).
		Disks: []lab.Disk{
			{Name: "sys", Size: 1_000_000_000_000, Serial: "WD-KILN-TEST-A"},
			{Name: "osd", Size: 500_000_000_000, Serial: "WD-KILN-TEST-B", WWN: "0x50014ee2b5f0c1a2"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := vm.WaitFor(ctx, regexp.MustCompile(`boot 2 \(bios\)`)); err != nil {
		t.Fatal(err)
	}
	if err := vm.Wait(ctx); !errors.Is(err, lab.ErrTooManyBoots) {
		t.Errorf("Wait = %v, want ErrTooManyBoots", err)
	}
	if got := vm.Boots(); got != 2 {
		t.Errorf("Boots = %d, want 2", got)
	}
	for _, e := range vm.Exits() {
		if e.Reason != lab.ReasonGuestReset {
			t.Errorf("exit %+v, want %s", e, lab.ReasonGuestReset)
		}
	}
	leases, _ := os.ReadFile(filepath.Join(out, "dnsmasq.leases"))
	if !strings.Contains(string(leases), "52:54:00:4b:00:10") {
		t.Errorf("no DHCP lease for the VM: %q", leases)
	}

	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	list, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(list), n.Namespace()) {
		t.Errorf("namespace %s (or its ISP box) left after Close:\n%s", n.Namespace(), list)
	}
	if pids := processesMentioning(out); len(pids) > 0 {
		t.Errorf("processes left after Close: %v", pids)
	}
}

// processesMentioning lists the pids whose command line contains s.
func processesMentioning(s string) []string {
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var pids []string
	for _, c := range cmdlines {
		b, err := os.ReadFile(c)
		if err == nil && strings.Contains(string(b), s) {
			pids = append(pids, filepath.Base(filepath.Dir(c)))
		}
	}
	return pids
}
