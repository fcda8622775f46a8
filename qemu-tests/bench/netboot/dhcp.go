package netboot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// Clients are the simulated netboot machines: their MACs and the
// addresses a lab plan gives them (the kiln side's hosts, dnsmasq's
// dhcp-host lines).
func Clients(n int) (macs []net.HardwareAddr, addrs []netip.Addr) {
	for i := range n {
		macs = append(macs, net.HardwareAddr{0x52, 0x54, 0x00, 0xbb, byte(i >> 8), byte(i)})
		addrs = append(addrs, netip.AddrFrom4([4]byte{10, 77, 1 + byte(i/250), byte(10 + i%250)}))
	}
	return macs, addrs
}

// Load is one run of the load generator: n clients, each one DHCP
// exchange (DISCOVER, OFFER, REQUEST, ACK) as PXE firmware sends it.
type Load struct {
	Completed int `json:"completed"`
	// Lost exchanges had a packet unanswered through all its tries,
	// Failed ones a wrong answer (a NAK, a proxy offer without boot
	// information).
	Lost    int     `json:"lost"`
	Failed  int     `json:"failed"`
	Seconds float64 `json:"seconds"`
	P50ms   float64 `json:"p50_ms"`
	P99ms   float64 `json:"p99_ms"`
	// Sent is every packet the clients sent, Retries those of them sent
	// again after a timeout, Unmatched the replies that came to no
	// waiting exchange (late ones, after their exchange was lost, or
	// duplicates), Drops the replies the kernel dropped from the clients' socket.
	Sent      int    `json:"sent"`
	Retries   int    `json:"retries"`
	Unmatched int    `json:"unmatched"`
	Drops     int    `json:"drops"`
	FirstErr  string `json:"first_error,omitempty"`
}

// addLoad sums the counts of two loads.
func addLoad(a, b Load) Load {
	a.Completed += b.Completed
	a.Lost += b.Lost
	a.Failed += b.Failed
	a.Sent += b.Sent
	a.Retries += b.Retries
	a.Unmatched += b.Unmatched
	a.Drops += b.Drops
	return a
}

// DHCP modes of the load: the server gives addresses (full) or only the
// boot information beside the network's own DHCP server (proxy).
const (
	ModeFull  = "full"
	ModeProxy = "proxy"
)

// LoadOptions are how the load's clients behave.
type LoadOptions struct {
	Mode string // ModeFull or ModeProxy
	Conc int    // clients at once
	// Each packet is sent at most Tries times, the first time waiting
	// Timeout for its reply, each further time twice as long before.
	Timeout time.Duration
	Tries   int
}

// The bench's load sends each packet once and waits a PXE ROM's first
// timeout: a reply later than that, which a ROM would have sent its
// packet again for, is a lost exchange, so that a retransmission hides
// neither a lost reply nor its 4 s in the latency.
const (
	loadTimeout = romTimeout
	loadTries   = 1
)

// RunLoad runs the exchanges of every MAC on iface through one socket
// (dhcpMux), at most o.Conc at once: in ModeFull a whole exchange, in
// ModeProxy a DISCOVER and the proxy's OFFER, which must carry boot
// information.
func RunLoad(ctx context.Context, iface string, macs []net.HardwareAddr, o LoadOptions) (Load, error) {
	m, err := openDHCPMux(iface)
	if err != nil {
		return Load{}, err
	}
	defer m.Close()
	return runLoad(ctx, m, macs, o), nil
}

// runLoad is RunLoad through m.
func runLoad(ctx context.Context, m *dhcpMux, macs []net.HardwareAddr, o LoadOptions) Load {
	m.timeout, m.tries = o.Timeout, max(o.Tries, 1)
	var lost atomic.Int64
	done, lat, run := runClients(macs, o.Conc, func(mac net.HardwareAddr) error {
		err := loadExchange(ctx, m, o.Mode, mac)
		if errors.Is(err, errNoReply) {
			lost.Add(1)
		}
		return err
	})
	l := Load{Completed: done, Lost: int(lost.Load()), Seconds: run.seconds, FirstErr: run.firstErr}
	l.Failed = len(macs) - l.Completed - l.Lost
	if l.Lost > 0 {
		// The late replies of the last lost exchanges are still on
		// their way, if they come at all.
		time.Sleep(m.timeout)
	}
	l.Sent, l.Retries, l.Unmatched, l.Drops = int(m.sent.Load()), int(m.retries.Load()), int(m.unmatched.Load()), m.drops()
	if len(lat) > 0 {
		l.P50ms = lat[len(lat)/2]
		l.P99ms = lat[min(len(lat)-1, len(lat)*99/100)]
	}
	return l
}

// loadExchange is one client's exchange of the load in mode.
func loadExchange(ctx context.Context, m *dhcpMux, mode string, mac net.HardwareAddr) error {
	if mode == ModeProxy {
		return m.proxyOffer(ctx, mac)
	}
	_, err := m.dora(ctx, mac, pxeROM...)
	return err
}

// pxeROM are the options of a BIOS PXE ROM's DHCP requests, its
// broadcast flag included: a PXE ROM, and iPXE, cannot take a unicast
// reply before it has an address. (Without it dnsmasq answers to the
// offered address through an ARP entry it injects, and one reply in a
// storm was lost to a stale entry: a 4 s retry.)
var pxeROM = []dhcpv4.Modifier{
	dhcpv4.WithBroadcast(true),
	dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
	dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)),
}

// clientsRun is what runClients saw besides the successes.
type clientsRun struct {
	seconds  float64
	firstErr string
}

// runClients runs fn for every MAC, at most conc at once, and returns
// how many succeeded and their latencies in ms, sorted.
func runClients(macs []net.HardwareAddr, conc int, fn func(net.HardwareAddr) error) (int, []float64, clientsRun) {
	var (
		mu    sync.Mutex
		lat   []float64
		run   clientsRun
		wg    sync.WaitGroup
		slots = make(chan struct{}, max(conc, 1))
	)
	start := time.Now()
	for _, mac := range macs {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			t := time.Now()
			err := fn(mac)
			d := time.Since(t)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if run.firstErr == "" {
					run.firstErr = fmt.Sprintf("%s: %v", mac, err)
				}
				return
			}
			lat = append(lat, float64(d.Microseconds())/1000)
		})
	}
	wg.Wait()
	run.seconds = time.Since(start).Seconds()
	slices.Sort(lat)
	return len(lat), lat, run
}

// proxyOffer sends a PXE ROM's DISCOVER from mac through m and waits
// for a proxy OFFER: no address, a boot file or PXE vendor options
// (option 43).
func (m *dhcpMux) proxyOffer(ctx context.Context, mac net.HardwareAddr) error {
	t, err := m.begin(mac)
	if err != nil {
		return err
	}
	defer t.end()
	discover, err := t.discover(pxeROM...)
	if err != nil {
		return err
	}
	offer, err := t.exchange(ctx, discover, isType(dhcpv4.MessageTypeOffer))
	if err != nil {
		return err
	}
	if !offer.YourIPAddr.IsUnspecified() {
		return fmt.Errorf("an offer of %s: not a proxy's", offer.YourIPAddr)
	}
	if offer.BootFileName == "" && offer.Options.Get(dhcpv4.OptionVendorSpecificInformation) == nil {
		return errors.New("a proxy offer without boot information")
	}
	return nil
}

// DHCPServers are kiln's full-mode DHCP (pxe/dhcp, as kiln gate serve
// runs it with network.dhcp.mode full) and dnsmasq as the lab's DHCP
// server, both knowing the clients' MACs and addresses.
func DHCPServers() []*Server {
	return []*Server{{Name: "kiln", Proto: "dhcp"}, {Name: "dnsmasq", Proto: "dhcp"}}
}

// startDHCP starts s in the server namespace for n clients, in mode.
func (s *Server) startDHCP(ctx context.Context, nt *Net, c Config, mode string, n int, iface string) error {
	switch {
	case s.Name == "kiln":
		s.cmd = nt.InServer(ctx, c.Self, "serve-dhcp", "-iface", iface, "-addr", nt.ServerAddr, "-clients", strconv.Itoa(n), "-mode", mode)
	case s.Name == "dnsmasq" && mode == ModeProxy:
		// dnsmasq's proxy mode as its manual gives it for PXE beside
		// another DHCP server: one boot service for BIOS PXE clients.
		s.cmd = nt.InServer(ctx, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
			"--interface="+iface, "--bind-interfaces", "--dhcp-range=10.77.0.0,proxy,255.255.0.0",
			"--pxe-service=x86PC,kiln,undionly.kpxe", "--user=root",
			"--pid-file="+filepath.Join(c.Work, "dnsmasq-proxy.pid"), "--log-facility="+filepath.Join(c.Work, "dnsmasq-proxy.log"))
	case s.Name == "dnsmasq":
		hf, err := writeHosts(c.Work, n)
		if err != nil {
			return err
		}
		leases := filepath.Join(c.Work, "dnsmasq.leases")
		os.Remove(leases)
		// The same answer kiln gives a BIOS PXE client: an address and
		// the iPXE ROM's file; no ping before an offer (kiln does none);
		// room for every client's lease and the range's (past its
		// default of 1000 leases dnsmasq NAKs).
		s.cmd = nt.InServer(ctx, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
			"--interface="+iface, "--bind-interfaces", "--dhcp-authoritative", "--no-ping",
			"--dhcp-lease-max="+strconv.Itoa(max(n+151, 1000)),
			"--dhcp-range=10.77.0.100,10.77.0.250,255.255.0.0,1h", "--dhcp-hostsfile="+hf,
			"--dhcp-boot=undionly.kpxe,,"+nt.ServerAddr, "--dhcp-leasefile="+leases,
			"--user=root", "--pid-file="+filepath.Join(c.Work, "dnsmasq-dhcp.pid"), "--log-facility="+filepath.Join(c.Work, "dnsmasq-dhcp.log"))
	default:
		return fmt.Errorf("no DHCP server %s", s.Name)
	}
	return s.startLogged(c)
}

// measureDHCP runs the load generator in mode against each server, rounds
// times, alternating, each server alone on the network during its turn.
func measureDHCP(ctx context.Context, nt *Net, o Options, mode string) ([]Figure, error) {
	what := "DHCP full mode"
	exchange := "an exchange (DISCOVER, OFFER, REQUEST, ACK)"
	if mode == ModeProxy {
		what, exchange = "proxyDHCP", "a proxy answer (DISCOVER, proxy OFFER)"
	}
	rate := Figure{Name: fmt.Sprintf("%s, %d PXE clients (distinct MACs), %d at once: completed exchanges per second; %s", what, o.clients(mode), o.DHCPConc, exchange), MiBps: map[string][]float64{}, Unit: "exchanges/s"}
	p50 := Figure{Name: what + ": p50 latency of an exchange (ms; lower is better)", MiBps: map[string][]float64{}, Unit: "ms", LowerBetter: true}
	p99 := Figure{Name: what + ": p99 latency of an exchange (ms; lower is better)", MiBps: map[string][]float64{}, Unit: "ms", LowerBetter: true}
	servers := DHCPServers()
	for _, s := range servers {
		for _, f := range []*Figure{&rate, &p50, &p99} {
			f.Servers = append(f.Servers, s.Name)
		}
	}
	total := map[string]Load{}
	for round := range o.Rounds {
		for i := range servers {
			s := servers[(i+round)%len(servers)]
			l, err := dhcpRound(ctx, nt, o, s, mode)
			if err != nil {
				return []Figure{rate, p50, p99}, err
			}
			total[s.Name] = addLoad(total[s.Name], l)
			rate.MiBps[s.Name] = append(rate.MiBps[s.Name], float64(l.Completed)/l.Seconds)
			p50.MiBps[s.Name] = append(p50.MiBps[s.Name], l.P50ms)
			p99.MiBps[s.Name] = append(p99.MiBps[s.Name], l.P99ms)
			fmt.Fprintf(o.Progress, "bench: %s %s round %d: %d completed, %d lost, %d failed in %.2f s, p50 %.1f ms, p99 %.1f ms; %d packets sent, %d retries, %d unmatched (late or duplicate) replies, %d replies dropped by the kernel %s\n",
				what, s.Name, round+1, l.Completed, l.Lost, l.Failed, l.Seconds, l.P50ms, l.P99ms, l.Sent, l.Retries, l.Unmatched, l.Drops, l.FirstErr)
		}
	}
	rate.Notes = dhcpNotes(servers, total, o.Rounds*o.clients(mode), mode)
	return []Figure{rate, p50, p99}, nil
}

// clients is how many clients a round of mode runs.
func (o Options) clients(mode string) int {
	if mode == ModeProxy {
		return o.ProxyClients
	}
	return o.DHCPClients
}

// dhcpRound starts s, runs the load generator against it twice in the
// client namespace, and stops s. The first run warms the server up and is
// not counted: a gate answers a storm after being up for hours, and a
// round of 2000 answers lasts a tenth of a second, too short to hide a
// just-started server's first allocations and page faults. The warm-up's
// losses and failures still show in the progress output.
func dhcpRound(ctx context.Context, nt *Net, o Options, s *Server, mode string) (Load, error) {
	if err := s.startDHCP(ctx, nt, o.Config, mode, o.clients(mode), nt.ServerIface); err != nil {
		return Load{}, err
	}
	defer s.Stop()
	time.Sleep(500 * time.Millisecond) // bound, listening
	warm, err := dhcpLoad(ctx, nt, o, s, mode)
	if err != nil {
		return warm, err
	}
	fmt.Fprintf(o.Progress, "bench: %s warm-up, not counted: %d completed, %d lost, %d failed in %.2f s\n", s.Name, warm.Completed, warm.Lost, warm.Failed, warm.Seconds)
	return dhcpLoad(ctx, nt, o, s, mode)
}

// dhcpLoad runs the load generator once against the running s.
func dhcpLoad(ctx context.Context, nt *Net, o Options, s *Server, mode string) (Load, error) {
	var l Load
	out, err := nt.InClient(ctx, o.Self, "dhcp-load", "-iface", nt.ClientIface, "-mode", mode,
		"-clients", strconv.Itoa(o.clients(mode)), "-conc", strconv.Itoa(o.DHCPConc),
		"-timeout", loadTimeout.String(), "-tries", strconv.Itoa(loadTries)).Output()
	if ee, ok := err.(*exec.ExitError); ok {
		return l, fmt.Errorf("dhcp load against %s: %w: %s", s.Name, err, ee.Stderr)
	}
	if err != nil {
		return l, fmt.Errorf("dhcp load against %s: %w", s.Name, err)
	}
	if err := json.Unmarshal(out, &l); err != nil {
		return l, fmt.Errorf("dhcp load against %s: %w: %s", s.Name, err, out)
	}
	return l, nil
}

// dhcpNotes are the rate figure's notes: every server's losses over all
// rounds of n exchanges, and how the load counts them.
func dhcpNotes(servers []*Server, total map[string]Load, n int, mode string) []string {
	var notes []string
	for _, s := range servers {
		t := total[s.Name]
		notes = append(notes, fmt.Sprintf("%s: of %d exchanges in all rounds %d lost (a packet without a reply in %s), %d failed (a wrong answer); %d packets sent, %d of them retransmissions; %d replies matched no waiting exchange (late, after it was lost, or duplicates); %d replies dropped by the clients' socket",
			s.Name, n, t.Lost, loadTimeout, t.Failed, t.Sent, t.Retries, t.Unmatched, t.Drops))
	}
	notes = append(notes, "each round starts the server and runs the same clients through it twice: the first run warms it up (a gate has been up for hours when a storm comes) and is not counted")
	notes = append(notes, fmt.Sprintf("the clients share one DHCP socket (one receive loop handing each reply to its exchange by xid and chaddr) and send each packet once, waiting %s, a PXE ROM's first timeout: a reply later than that is a lost exchange, not a retransmission's, so no retry hides a loss or its wait in the latency", loadTimeout))
	if mode == ModeFull {
		notes = append(notes, "kiln gives a plan machine its profile address and writes no lease for it; dnsmasq records every lease, dhcp-host ones too, in its lease file")
	} else {
		notes = append(notes, "kiln answers the plan's machines only; dnsmasq's proxy answers every PXE client")
	}
	return notes
}
