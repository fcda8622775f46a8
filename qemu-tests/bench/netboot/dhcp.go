package netboot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
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
	Completed int     `json:"completed"`
	Lost      int     `json:"lost"`
	Seconds   float64 `json:"seconds"`
	P50ms     float64 `json:"p50_ms"`
	P99ms     float64 `json:"p99_ms"`
	FirstErr  string  `json:"first_error,omitempty"`
}

// DHCP modes of the load: the server gives addresses (full) or only the
// boot information beside the network's own DHCP server (proxy).
const (
	ModeFull  = "full"
	ModeProxy = "proxy"
)

// RunLoad runs the exchanges of every MAC on iface, at most conc at once,
// each bounded by timeout: in ModeFull a whole exchange, in ModeProxy a
// DISCOVER and the proxy's OFFER, which must carry boot information.
func RunLoad(ctx context.Context, iface, mode string, macs []net.HardwareAddr, conc int, timeout time.Duration) Load {
	done, lat, l := runClients(macs, conc, func(mac net.HardwareAddr) error {
		if mode == ModeProxy {
			return proxyOffer(ctx, iface, mac, timeout)
		}
		_, err := dora(ctx, iface, mac, timeout, 1, pxeROM...)
		return err
	})
	l2 := Load{Completed: done, Lost: len(macs) - done, Seconds: l.seconds, FirstErr: l.firstErr}
	if len(lat) > 0 {
		l2.P50ms = lat[len(lat)/2]
		l2.P99ms = lat[min(len(lat)-1, len(lat)*99/100)]
	}
	return l2
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

// dora is one DHCP exchange (DISCOVER, OFFER, REQUEST, ACK) from mac on
// iface, each packet sent up to tries times; it returns the ACK.
func dora(ctx context.Context, iface string, mac net.HardwareAddr, timeout time.Duration, tries int, mods ...dhcpv4.Modifier) (*dhcpv4.DHCPv4, error) {
	c, err := nclient4.New(iface, nclient4.WithHWAddr(mac), nclient4.WithTimeout(timeout), nclient4.WithRetry(tries))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	l, err := c.Request(ctx, mods...)
	if err != nil {
		return nil, err
	}
	return l.ACK, nil
}

// proxyOffer sends a PXE DISCOVER from mac and waits for a proxy OFFER:
// no address, a boot file or PXE vendor options (option 43).
func proxyOffer(ctx context.Context, iface string, mac net.HardwareAddr, timeout time.Duration) error {
	c, err := nclient4.New(iface, nclient4.WithHWAddr(mac), nclient4.WithTimeout(timeout), nclient4.WithRetry(1))
	if err != nil {
		return err
	}
	defer c.Close()
	offer, err := c.DiscoverOffer(ctx, pxeROM...)
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
		// the iPXE ROM's file; no ping before an offer (kiln does none).
		s.cmd = nt.InServer(ctx, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
			"--interface="+iface, "--bind-interfaces", "--dhcp-authoritative", "--no-ping",
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
	rate := Figure{Name: fmt.Sprintf("%s, %d PXE clients (distinct MACs), %d at once: completed exchanges per second; %s", what, o.DHCPClients, o.DHCPConc, exchange), MiBps: map[string][]float64{}, Unit: "exchanges/s"}
	p50 := Figure{Name: what + ": p50 latency of an exchange (ms; lower is better)", MiBps: map[string][]float64{}, Unit: "ms", LowerBetter: true}
	p99 := Figure{Name: what + ": p99 latency of an exchange (ms; lower is better)", MiBps: map[string][]float64{}, Unit: "ms", LowerBetter: true}
	servers := DHCPServers()
	for _, s := range servers {
		for _, f := range []*Figure{&rate, &p50, &p99} {
			f.Servers = append(f.Servers, s.Name)
		}
	}
	lost := map[string]int{}
	for round := range o.Rounds {
		for i := range servers {
			s := servers[(i+round)%len(servers)]
			if err := s.startDHCP(ctx, nt, o.Config, mode, o.DHCPClients, nt.ServerIface); err != nil {
				return []Figure{rate, p50, p99}, err
			}
			time.Sleep(500 * time.Millisecond) // bound, listening
			out, err := nt.InClient(ctx, o.Self, "dhcp-load", "-iface", nt.ClientIface, "-mode", mode, "-clients", strconv.Itoa(o.DHCPClients), "-conc", strconv.Itoa(o.DHCPConc)).Output()
			s.Stop()
			if err != nil {
				return []Figure{rate, p50, p99}, fmt.Errorf("dhcp load against %s: %w", s.Name, err)
			}
			var l Load
			if err := json.Unmarshal(out, &l); err != nil {
				return []Figure{rate, p50, p99}, fmt.Errorf("dhcp load against %s: %w: %s", s.Name, err, out)
			}
			lost[s.Name] += l.Lost
			rate.MiBps[s.Name] = append(rate.MiBps[s.Name], float64(l.Completed)/l.Seconds)
			p50.MiBps[s.Name] = append(p50.MiBps[s.Name], l.P50ms)
			p99.MiBps[s.Name] = append(p99.MiBps[s.Name], l.P99ms)
			fmt.Fprintf(o.Progress, "bench: %s %s round %d: %d completed, %d lost in %.2f s, p50 %.1f ms, p99 %.1f ms %s\n",
				what, s.Name, round+1, l.Completed, l.Lost, l.Seconds, l.P50ms, l.P99ms, l.FirstErr)
		}
	}
	for _, s := range servers {
		rate.Notes = append(rate.Notes, fmt.Sprintf("%s: %d exchanges lost in all rounds", s.Name, lost[s.Name]))
	}
	if mode == ModeFull {
		rate.Notes = append(rate.Notes, "kiln gives a plan machine its profile address and writes no lease for it; dnsmasq records every lease, dhcp-host ones too, in its lease file")
	} else {
		rate.Notes = append(rate.Notes, "kiln answers the plan's machines only; dnsmasq's proxy answers every PXE client")
	}
	return []Figure{rate, p50, p99}, nil
}
