// Command cmd is `make bench`'s netboot side-by-side (package netboot):
// kiln's TFTP and HTTP servers against tftpd-hpa, dnsmasq and nginx across
// a veth pair between two network namespaces it makes and removes. Needs
// root, curl, in.tftpd, dnsmasq and nginx (make bench installs them).
//
//	go run ./qemu-tests/bench/netboot/cmd -rounds 5 -out out/bench/netboot
//
// Its serve-tftp, serve-http, serve-dhcp, serve-copy, sink, dhcp-load and
// storm subcommands are the pieces it runs inside the namespaces. kiln's
// servers log at info, as the gate does, into the work folder; so do the
// peers. -only (or -skip) picks groups of figures:
//
//	go run ./qemu-tests/bench/netboot/cmd -rounds 1 -only storm,line
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kilnlab/kiln/image/bundle"
	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/pxe/dhcp"
	"github.com/kilnlab/kiln/pxe/httpd"
	"github.com/kilnlab/kiln/pxe/state"
	"github.com/kilnlab/kiln/pxe/tftp"
	"github.com/kilnlab/kiln/qemu-tests/bench/netboot"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "serve-tftp":
			return serveTFTP(ctx, args[1:], stderr)
		case "serve-http":
			return serveHTTP(ctx, args[1:], stderr)
		case "serve-copy":
			return serveCopy(ctx, args[1:], stdout)
		case "sink":
			return sink(ctx, args[1:], stdout)
		case "serve-dhcp":
			return serveDHCP(ctx, args[1:], stderr)
		case "dhcp-load":
			return dhcpLoad(ctx, args[1:], stdout)
		case "storm":
			return storm(ctx, args[1:], stdout)
		}
	}
	fs := flag.NewFlagSet("netboot-bench", flag.ContinueOnError)
	rounds := fs.Int("rounds", 5, "rounds of each figure, the servers alternating")
	out := fs.String("out", "out/bench/netboot", "folder for the payloads, the servers' configs and logs")
	tftpMiB := fs.Int64("tftp-mib", 64, "MiB of the TFTP file")
	httpMiB := fs.Int64("http-mib", 1024, "MiB of the HTTP file (a role image's size)")
	par := fs.Int("parallel", 8, "HTTP clients at once in the parallel figure")
	dhcpN := fs.Int("dhcp-clients", 2000, "simulated PXE clients (distinct MACs) per full-mode DHCP round (fewer finish in milliseconds: too short to time)")
	proxyN := fs.Int("proxy-clients", 20000, "simulated PXE clients per proxyDHCP round (proxy answers are cheap on both sides: 2000 last a tenth of a second)")
	dhcpConc := fs.Int("dhcp-conc", 50, "of them at once")
	stormN := fs.Int("storm-clients", 50, "netboot clients at once in the PXE storm")
	kiln := fs.String("kiln", "out/bin/kiln", "the kiln binary whose gate serve the storm runs")
	skip := fs.String("skip", "", "comma-separated groups of figures not to run: "+strings.Join(netboot.GroupNames(), ", "))
	only := fs.String("only", "", "comma-separated groups of figures to run, none other (default all): "+strings.Join(netboot.GroupNames(), ", "))
	if err := fs.Parse(args); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(*out)
	if err != nil {
		return err
	}
	kilnPath, err := filepath.Abs(*kiln)
	if err != nil {
		return err
	}
	work := filepath.Join(abs, "work")
	o := netboot.Options{
		Rounds: *rounds, TFTPSize: *tftpMiB << 20, HTTPSize: *httpMiB << 20, Parallel: *par,
		DHCPClients: *dhcpN, ProxyClients: *proxyN, DHCPConc: *dhcpConc, Skip: groupSet(*skip), Only: groupSet(*only),
		StormClients: *stormN, Kiln: kilnPath,
		Config:   netboot.Config{Dir: filepath.Join(abs, "files"), Work: work, Self: self},
		Progress: stderr,
	}
	if err := o.CheckGroups(); err != nil {
		return err
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	n, err := netboot.NewNet(ctx)
	if err != nil {
		return err
	}
	defer n.Close()
	r, err := netboot.Run(ctx, n, o)
	if r != nil {
		fmt.Fprintf(stdout, "kiln bench, netboot servers: a veth pair at MTU 1500 between two network namespaces, client curl %s\n", curlVersion(ctx))
		netboot.Print(stdout, r, *rounds)
	}
	return err
}

// groupSet is a comma-separated list as a set.
func groupSet(list string) map[string]bool {
	set := map[string]bool{}
	for _, g := range strings.Split(list, ",") {
		if g = strings.TrimSpace(g); g != "" {
			set[g] = true
		}
	}
	return set
}

func curlVersion(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "curl", "--version").Output()
	if err != nil {
		return "?"
	}
	var v string
	fmt.Sscanf(string(out), "curl %s", &v)
	return v
}

// serveTFTP runs kiln's TFTP server (pxe/tftp, as the gate runs it).
func serveTFTP(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve-tftp", flag.ContinueOnError)
	root := fs.String("root", "", "served directory")
	addr := fs.String("addr", "", "ip:port")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ua, err := net.ResolveUDPAddr("udp4", *addr)
	if err != nil {
		return err
	}
	conn, err := tftp.Listen(ua)
	if err != nil {
		return err
	}
	s := &tftp.Server{Root: *root, Log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	return s.Serve(ctx, conn)
}

// serveHTTP runs kiln's gate HTTP service (pxe/httpd) over dir as its
// bundle: the /files/ path that installers fetch role images from.
func serveHTTP(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve-http", flag.ContinueOnError)
	dir := fs.String("dir", "", "served directory (a manifest.json is written when missing)")
	addr := fs.String("addr", "", "ip:port")
	stateDir := fs.String("state", "", "state directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(*dir, bundle.ManifestFile)); errors.Is(err, os.ErrNotExist) {
		if err := bundle.WriteManifest(*dir); err != nil {
			return err
		}
	}
	states, err := state.Open(*stateDir, nil)
	if err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		return err
	}
	srv, err := httpd.New(httpd.Config{
		Plan:      &plan.Plan{Lab: "bench", Gate: plan.Gate{Name: "gate", Address: host}},
		BundleDir: *dir, States: states, GateURL: "http://" + *addr,
		Log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		return err
	}
	defer srv.Close()
	l, err := net.Listen("tcp4", *addr)
	if err != nil {
		return err
	}
	// As kiln gate serve runs it (pxe.Service).
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 30 * time.Second, ConnContext: httpd.ConnContext}
	go func() { <-ctx.Done(); hs.Close() }()
	if err := hs.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// serveCopy sends the file to every connection with sendfile(2), as
// nginx sends it: the line rate's sender, no protocol. It reads the file
// once before it listens, so that every round comes from the page cache,
// and prints "ready" once it listens.
func serveCopy(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("serve-copy", flag.ContinueOnError)
	addr := fs.String("addr", "", "ip:port")
	file := fs.String("file", "", "the file sent")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := readFile(*file); err != nil {
		return err
	}
	l, err := net.Listen("tcp4", *addr)
	if err != nil {
		return err
	}
	go func() { <-ctx.Done(); l.Close() }()
	fmt.Fprintln(stdout, "ready")
	for {
		c, err := l.Accept()
		if err != nil {
			return nil
		}
		go sendFile(c, *file)
	}
}

// sendFile copies path to c and closes c: io.Copy from an *os.File to a
// TCP connection is sendfile(2), no copy through this process.
func sendFile(c net.Conn, path string) error {
	defer c.Close()
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(c, f)
	return err
}

// readFile reads path to its end and returns its size.
func readFile(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return drain(f)
}

// drain reads r to its end with 1 MiB reads and returns the bytes read.
// Not io.Copy to io.Discard: that reads 8 KiB at a time, a syscall per
// 8 KiB, which was most of why the line rate once came out below nginx.
func drain(r io.Reader) (int64, error) {
	buf := make([]byte, 1<<20)
	var total int64
	for {
		n, err := r.Read(buf)
		total += int64(n)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// sink reads conns connections at once to their end and prints the bytes
// read and the seconds from the first dial to the last byte, as JSON:
// the transfer alone, not this process's start.
func sink(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("sink", flag.ContinueOnError)
	addr := fs.String("addr", "", "ip:port")
	conns := fs.Int("conns", 1, "connections at once")
	if err := fs.Parse(args); err != nil {
		return err
	}
	start := time.Now()
	n, err := drainConns(ctx, *addr, *conns)
	r := netboot.CopyResult{Bytes: n, Seconds: time.Since(start).Seconds()}
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(r)
}

// drainConns reads conns connections to addr at once to their end and
// returns the bytes of all.
func drainConns(ctx context.Context, addr string, conns int) (int64, error) {
	var wg sync.WaitGroup
	sizes, errs := make([]int64, conns), make([]error, conns)
	for i := range conns {
		wg.Go(func() { sizes[i], errs[i] = drainConn(ctx, addr) })
	}
	wg.Wait()
	var total int64
	for _, n := range sizes {
		total += n
	}
	return total, errors.Join(errs...)
}

func drainConn(ctx context.Context, addr string) (int64, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp4", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return drain(c)
}

// serveDHCP runs kiln's full-mode DHCP (pxe/dhcp.Full, as kiln gate
// serve runs it) on iface, knowing the bench's clients as plan machines.
func serveDHCP(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve-dhcp", flag.ContinueOnError)
	iface := fs.String("iface", "", "interface")
	addr := fs.String("addr", "", "the server's address")
	n := fs.Int("clients", 0, "clients the plan knows")
	mode := fs.String("mode", netboot.ModeFull, "full or proxy")
	if err := fs.Parse(args); err != nil {
		return err
	}
	server, err := netip.ParseAddr(*addr)
	if err != nil {
		return err
	}
	macs, addrs := netboot.Clients(*n)
	hosts := benchHosts{}
	for i, m := range macs {
		hosts[m.String()] = dhcp.Host{Name: fmt.Sprintf("node-%d", i), Addr: addrs[i], Netboot: true}
	}
	boot := dhcp.Boot{Server: server, HTTPPort: 8080, UEFIFile: "snponly.efi"}
	var h dhcp.Handler = &dhcp.Proxy{Hosts: hosts, Boot: boot}
	if *mode == netboot.ModeFull {
		first, last := netip.MustParseAddr("10.77.0.100"), netip.MustParseAddr("10.77.0.250")
		h = &dhcp.Full{Hosts: hosts, Boot: boot, Subnet: netip.MustParsePrefix("10.77.0.0/16"), Pool: dhcp.NewPool(first, last, addrs, nil)}
	}
	conn, err := dhcp.Listen(ctx, *iface, dhcp.ServerPort)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return dhcp.Serve(ctx, conn, h, dhcp.ViaDHCP, dhcp.ClientPort, log)
}

// benchHosts is the plan's machines by MAC, as pxe's hosts is.
type benchHosts map[string]dhcp.Host

func (h benchHosts) Host(mac net.HardwareAddr) (dhcp.Host, bool) {
	x, ok := h[mac.String()]
	return x, ok
}

// dhcpLoad runs the load generator and prints its result as JSON.
func dhcpLoad(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("dhcp-load", flag.ContinueOnError)
	iface := fs.String("iface", "", "interface")
	n := fs.Int("clients", 0, "clients")
	conc := fs.Int("conc", 1, "at once")
	mode := fs.String("mode", netboot.ModeFull, "full or proxy")
	timeout := fs.Duration("timeout", 4*time.Second, "the wait for a reply to a packet's first send (a PXE ROM's: 4s)")
	tries := fs.Int("tries", 1, "sends of a packet, the wait doubling each time, before its exchange is lost (a PXE ROM's: 4)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	macs, _ := netboot.Clients(*n)
	l, err := netboot.RunLoad(ctx, *iface, macs, netboot.LoadOptions{Mode: *mode, Conc: *conc, Timeout: *timeout, Tries: *tries})
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(l)
}

// storm netboots n clients at once and prints the result as JSON.
func storm(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("storm", flag.ContinueOnError)
	iface := fs.String("iface", "", "interface")
	n := fs.Int("clients", 0, "clients")
	if err := fs.Parse(args); err != nil {
		return err
	}
	macs, _ := netboot.Clients(*n)
	r, err := netboot.RunStorm(ctx, *iface, macs)
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(r)
}
