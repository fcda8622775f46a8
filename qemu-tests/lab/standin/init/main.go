// Command init is the stand-in initramfs init of package standin (built for
// arm64, run as PID 1). It loads the modules its initramfs carries, then,
// by kiln.standin= on the kernel command line:
//
//	gate  plays the gate appliance in the contract's terms: the NIC whose
//	      MAC is kiln.standin.mac gets kiln.standin.addr (CIDR), GET
//	      /status.json on :8080 answers {"gate":{uptime_s, kiln_rss_bytes,
//	      mem_used_bytes, mem_total_bytes}}, and the console shows
//	      `KILN-GATE-SERVING addr=<ip> http=<url> boot=<s>` (also on
//	      /dev/kmsg, like the real appliance).
//	root  mounts the ext4 disk kiln.standin.root (default /dev/vda) and
//	      switch_roots to its /sbin/init (a Debian systemd).
//
// Anything else prints KILN-STANDIN-OK and powers off. PID 1 never exits:
// on failure it prints KILN-STANDIN-FAILED and idles.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/u-root/u-root/pkg/mount"
	"github.com/vishvananda/netlink"

	"github.com/kilnlab/kiln/image/initramfs/kmod"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stdout, nil))
	if err := run(log); err != nil {
		fmt.Printf("KILN-STANDIN-FAILED %v\n", err)
	}
	for {
		time.Sleep(time.Hour)
	}
}

func run(log *slog.Logger) error {
	for _, m := range []struct{ fs, dir string }{{"proc", "/proc"}, {"sysfs", "/sys"}, {"devtmpfs", "/dev"}} {
		_ = os.MkdirAll(m.dir, 0o755)
		if err := syscall.Mount(m.fs, m.dir, m.fs, 0, ""); err != nil && !errors.Is(err, syscall.EBUSY) {
			return fmt.Errorf("mount %s: %w", m.dir, err)
		}
	}
	params, err := cmdline()
	if err != nil {
		return err
	}
	if dir, err := kmod.Dir("/"); err == nil {
		if _, err := os.Stat(dir); err == nil {
			n, err := kmod.Loader{Dir: dir, Log: log}.LoadAll()
			log.Info("modules loaded", "count", n, "err", err)
		}
	}
	switch params["kiln.standin"] {
	case "gate":
		return gate(log, params["kiln.standin.addr"], params["kiln.standin.mac"])
	case "root":
		dev := params["kiln.standin.root"]
		if dev == "" {
			dev = "/dev/vda"
		}
		return switchRoot(dev)
	default:
		fmt.Println("KILN-STANDIN-OK")
		syscall.Sync()
		return syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	}
}

func cmdline() (map[string]string, error) {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, f := range strings.Fields(string(b)) {
		k, v, _ := strings.Cut(f, "=")
		out[k] = v
	}
	return out, nil
}

// gate brings the NIC up and serves status like the appliance.
func gate(log *slog.Logger, addr, mac string) error {
	a, err := netlink.ParseAddr(addr)
	if err != nil {
		return fmt.Errorf("kiln.standin.addr: %w", err)
	}
	link, err := waitLink(mac, 20*time.Second)
	if err != nil {
		return err
	}
	if lo, err := netlink.LinkByName("lo"); err == nil {
		_ = netlink.LinkSetUp(lo)
	}
	if err := netlink.AddrAdd(link, a); err != nil {
		return fmt.Errorf("address %s: %w", addr, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("link up: %w", err)
	}
	ln, err := net.Listen("tcp", ":8080")
	if err != nil {
		return err
	}
	ip := a.IP.String()
	marker := fmt.Sprintf("KILN-GATE-SERVING addr=%s http=http://%s:8080/ boot=%.1f", ip, ip, uptime())
	fmt.Println(marker)
	if k, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0); err == nil {
		fmt.Fprintln(k, marker)
		k.Close()
	}
	log.Info("serving", "addr", ln.Addr())
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"gate": gateStatus(), "machines": []any{}})
	})
	return (&http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}).Serve(ln)
}

// waitLink waits for the NIC with this MAC (or, without one, the first
// non-loopback link): its driver was just loaded.
func waitLink(mac string, d time.Duration) (netlink.Link, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		links, err := netlink.LinkList()
		if err != nil {
			return nil, err
		}
		for _, l := range links {
			hw := l.Attrs().HardwareAddr.String()
			if l.Attrs().Name != "lo" && hw != "" && (mac == "" || strings.EqualFold(hw, mac)) {
				return l, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no NIC with MAC %q after %v", mac, d)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// gateStatus is the contract's "gate" object of /status.json.
func gateStatus() map[string]any {
	mem := meminfo()
	return map[string]any{
		"uptime_s":        uptime(),
		"kiln_rss_bytes":  statusKB("/proc/self/status", "VmRSS") * 1024,
		"mem_used_bytes":  (mem["MemTotal"] - mem["MemAvailable"]) * 1024,
		"mem_total_bytes": mem["MemTotal"] * 1024,
	}
}

func uptime() float64 {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0
	}
	f, _, _ := strings.Cut(string(b), " ")
	v, _ := strconv.ParseFloat(f, 64)
	return v
}

func meminfo() map[string]int64 {
	out := map[string]int64{}
	b, _ := os.ReadFile("/proc/meminfo")
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		out[k] = n
	}
	return out
}

// statusKB reads a "Key:   N kB" line of a /proc status file.
func statusKB(path, key string) int64 {
	b, _ := os.ReadFile(path)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// switchRoot mounts dev (ext4) on /newroot and execs its /sbin/init.
func switchRoot(dev string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(dev); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear", dev)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := syscall.Mount(dev, "/newroot", "ext4", 0, ""); err != nil {
		return fmt.Errorf("mount %s: %w", dev, err)
	}
	fmt.Printf("KILN-STANDIN-SWITCHROOT %s uptime=%.2f\n", dev, uptime())
	return mount.SwitchRoot("/newroot", "/sbin/init")
}
