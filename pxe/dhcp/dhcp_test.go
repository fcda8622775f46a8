package dhcp

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

var (
	gate    = netip.MustParseAddr("192.168.1.10")
	macBIOS = mustMAC("52:54:00:00:01:02")
	macUEFI = mustMAC("52:54:00:00:01:01")
	macGate = mustMAC("52:54:00:00:00:0a")
	macPi   = mustMAC("52:54:00:00:00:0b")
	macLost = mustMAC("02:00:00:00:99:99")
)

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

type hostMap map[string]Host

func (h hostMap) Host(mac net.HardwareAddr) (Host, bool) {
	x, ok := h[mac.String()]
	return x, ok
}

var hosts = hostMap{
	macBIOS.String(): {Name: "ceph-2", Addr: netip.MustParseAddr("192.168.1.12"), Netboot: true},
	macUEFI.String(): {Name: "ceph-1", Addr: netip.MustParseAddr("192.168.1.11"), Netboot: true},
	macGate.String(): {Name: "gate-1", Addr: gate, Reason: "the gate itself"},
	macPi.String():   {Name: "pi-2", Addr: netip.MustParseAddr("192.168.1.20"), Reason: "board rpi4"},
}

var boot = Boot{Server: gate, HTTPPort: 8080}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// request builds a client packet the way firmware does.
func request(t testing.TB, mt dhcpv4.MessageType, mac net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := dhcpv4.New(append([]dhcpv4.Modifier{
		dhcpv4.WithHwAddr(mac),
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithBroadcast(true),
	}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func vendor(s string) dhcpv4.Modifier { return dhcpv4.WithOption(dhcpv4.OptClassIdentifier(s)) }
func arch(a iana.Arch) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptClientArch(a))
}

var (
	pxeBIOS = []dhcpv4.Modifier{vendor("PXEClient:Arch:00000:UNDI:002001"), arch(iana.INTEL_X86PC)}
	pxeUEFI = []dhcpv4.Modifier{vendor("PXEClient:Arch:00007:UNDI:003016"), arch(iana.EFI_X86_64)}
)

// summary is what the tests compare of a reply.
type summary struct {
	Type      string
	YourIP    string
	ServerIP  string
	File      string
	Opt67     string
	Vendor    string
	Opt43     []byte
	ServerID  string
	TFTPName  string
	Mask      string
	Router    string
	DNS       string
	NTP       string
	Opt97     []byte
	LeaseTime time.Duration
}

func summarize(r *dhcpv4.DHCPv4) *summary {
	if r == nil {
		return nil
	}
	s := &summary{
		Type:     r.MessageType().String(),
		YourIP:   r.YourIPAddr.String(),
		ServerIP: r.ServerIPAddr.String(),
		File:     r.BootFileName,
		Opt67:    r.BootFileNameOption(),
		Vendor:   r.ClassIdentifier(),
		Opt43:    r.GetOneOption(dhcpv4.OptionVendorSpecificInformation),
		ServerID: r.ServerIdentifier().String(),
		TFTPName: r.TFTPServerName(),
		Opt97:    r.GetOneOption(dhcpv4.OptionClientMachineIdentifier),
	}
	if m := r.SubnetMask(); m != nil {
		s.Mask = net.IP(m).String()
	}
	if rt := r.Router(); len(rt) > 0 {
		s.Router = rt[0].String()
	}
	if d := r.DNS(); len(d) > 0 {
		s.DNS = d[0].String()
	}
	if n := r.NTPServers(); len(n) > 0 {
		s.NTP = fmt.Sprint(n)
	}
	s.LeaseTime = r.IPAddressLeaseTime(0)
	return s
}

func proxyOffer(file, vendor string, opt43 []byte) *summary {
	s := &summary{Type: "OFFER", YourIP: "0.0.0.0", ServerIP: "192.168.1.10", File: file, Opt67: file,
		Vendor: vendor, Opt43: opt43, ServerID: "192.168.1.10"}
	if !strings.HasPrefix(file, "http") {
		s.TFTPName = "192.168.1.10"
	}
	return s
}

func TestProxy(t *testing.T) {
	pxe43 := []byte{6, 1, 8, 255}
	guid := append([]byte{0}, bytes.Repeat([]byte{0xab}, 16)...)
	for _, tc := range []struct {
		name string
		req  *dhcpv4.DHCPv4
		via  Via
		boot Boot
		want *summary
	}{
		{"bios pxe", request(t, dhcpv4.MessageTypeDiscover, macBIOS, pxeBIOS...), ViaDHCP, boot,
			proxyOffer("undionly.kpxe", "PXEClient", pxe43)},
		{"uefi arch 7", request(t, dhcpv4.MessageTypeDiscover, macUEFI, pxeUEFI...), ViaDHCP, boot,
			proxyOffer("ipxe.efi", "PXEClient", pxe43)},
		{"uefi arch 9", request(t, dhcpv4.MessageTypeDiscover, macUEFI, vendor("PXEClient:Arch:00009:UNDI:003016"), arch(iana.EFI_BC)), ViaDHCP, boot,
			proxyOffer("ipxe.efi", "PXEClient", pxe43)},
		{"uefi snponly configured", request(t, dhcpv4.MessageTypeDiscover, macUEFI, pxeUEFI...), ViaDHCP,
			Boot{Server: gate, HTTPPort: 8080, UEFIFile: "snponly.efi"},
			proxyOffer("snponly.efi", "PXEClient", pxe43)},
		{"no option 93: arch from option 60", request(t, dhcpv4.MessageTypeDiscover, macUEFI, vendor("PXEClient:Arch:00007:UNDI:003016")), ViaDHCP, boot,
			proxyOffer("ipxe.efi", "PXEClient", pxe43)},
		{"uefi http boot", request(t, dhcpv4.MessageTypeDiscover, macUEFI, vendor("HTTPClient:Arch:00016:UNDI:003001"), arch(iana.EFI_X86_64_HTTP)), ViaDHCP, boot,
			proxyOffer("http://192.168.1.10:8080/files/tftp/ipxe.efi", "HTTPClient", nil)},
		{"ipxe", request(t, dhcpv4.MessageTypeDiscover, macBIOS, append(pxeBIOS, dhcpv4.WithUserClass("iPXE", false))...), ViaDHCP, boot,
			proxyOffer("http://192.168.1.10:8080/boot.ipxe", "PXEClient", pxe43)},
		{"option 97 echoed", request(t, dhcpv4.MessageTypeDiscover, macUEFI, append(pxeUEFI, dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, guid))...), ViaDHCP, boot,
			func() *summary { s := proxyOffer("ipxe.efi", "PXEClient", pxe43); s.Opt97 = guid; return s }()},
		{"request on 4011", request(t, dhcpv4.MessageTypeRequest, macUEFI, pxeUEFI...), ViaProxy, boot,
			func() *summary { s := proxyOffer("ipxe.efi", "PXEClient", pxe43); s.Type = "ACK"; return s }()},
		{"request on 67 naming the gate", request(t, dhcpv4.MessageTypeRequest, macUEFI, append(pxeUEFI, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(gate.AsSlice()))))...), ViaDHCP, boot,
			func() *summary { s := proxyOffer("ipxe.efi", "PXEClient", pxe43); s.Type = "ACK"; return s }()},
		{"request on 67 to the real server", request(t, dhcpv4.MessageTypeRequest, macUEFI, append(pxeUEFI, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(192, 168, 1, 1))))...), ViaDHCP, boot, nil},
		{"inform on 67", request(t, dhcpv4.MessageTypeInform, macUEFI, pxeUEFI...), ViaDHCP, boot, nil},
		{"unknown mac", request(t, dhcpv4.MessageTypeDiscover, macLost, pxeBIOS...), ViaDHCP, boot, nil},
		{"the gate itself", request(t, dhcpv4.MessageTypeDiscover, macGate, pxeUEFI...), ViaDHCP, boot, nil},
		{"rpi4 board", request(t, dhcpv4.MessageTypeDiscover, macPi, vendor("PXEClient:Arch:00000:UNDI:002001")), ViaDHCP, boot, nil},
		{"not a netboot client", request(t, dhcpv4.MessageTypeDiscover, macBIOS, vendor("android-dhcp-14")), ViaDHCP, boot, nil},
		{"arm64 uefi: no first stage", request(t, dhcpv4.MessageTypeDiscover, macUEFI, vendor("PXEClient:Arch:00011:UNDI:003000"), arch(iana.EFI_ARM64)), ViaDHCP, boot, nil},
		{"pxe without any arch", request(t, dhcpv4.MessageTypeDiscover, macUEFI, vendor("PXEClient")), ViaDHCP, boot, nil},
		{"release", request(t, dhcpv4.MessageTypeRelease, macUEFI, pxeUEFI...), ViaDHCP, boot, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Proxy{Hosts: hosts, Boot: tc.boot}
			got := p.Reply(PacketLog(quiet(), tc.req), tc.req, tc.via)
			if diff := cmp.Diff(tc.want, summarize(got)); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
			if got != nil {
				if got.TransactionID != tc.req.TransactionID || got.ClientHWAddr.String() != tc.req.ClientHWAddr.String() {
					t.Errorf("reply xid/chaddr %s/%s, want %s/%s", got.TransactionID, got.ClientHWAddr, tc.req.TransactionID, tc.req.ClientHWAddr)
				}
				// The wire form must carry the same: the BOOTP file field
				// is what U-Boot reads.
				back, err := dhcpv4.FromBytes(got.ToBytes())
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(summarize(got), summarize(back)); diff != "" {
					t.Errorf("after encoding (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestUnknownMACLogged(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	req := request(t, dhcpv4.MessageTypeDiscover, macLost, pxeBIOS...)
	reply, _ := Respond(&Proxy{Hosts: hosts, Boot: boot}, log, req.ToBytes(), &net.UDPAddr{IP: net.IPv4zero, Port: 68}, ViaDHCP, ClientPort)
	if reply != nil {
		t.Fatal("answered an unknown MAC")
	}
	out := buf.String()
	for _, want := range []string{"level=WARN", "mac=02:00:00:00:99:99", "xid=" + req.TransactionID.String(), "not in the plan"} {
		if !strings.Contains(out, want) {
			t.Errorf("log %q lacks %q", out, want)
		}
	}
}

func TestDestination(t *testing.T) {
	bcast := request(t, dhcpv4.MessageTypeDiscover, macBIOS)
	relayed := request(t, dhcpv4.MessageTypeDiscover, macBIOS, dhcpv4.WithGatewayIP(net.IPv4(10, 0, 0, 1)))
	renew := request(t, dhcpv4.MessageTypeRequest, macBIOS, dhcpv4.WithClientIP(net.IPv4(192, 168, 1, 50)))
	peer := &net.UDPAddr{IP: net.IPv4(192, 168, 1, 50), Port: 68}
	for _, tc := range []struct {
		name string
		req  *dhcpv4.DHCPv4
		via  Via
		want string
	}{
		{"broadcast", bcast, ViaDHCP, "255.255.255.255:68"},
		{"relay", relayed, ViaDHCP, "10.0.0.1:67"},
		{"ciaddr", renew, ViaDHCP, "192.168.1.50:68"},
		{"proxy port answers the sender", renew, ViaProxy, "192.168.1.50:68"},
	} {
		if got := destination(tc.req, peer, tc.via, ClientPort).String(); got != tc.want {
			t.Errorf("%s: destination = %s, want %s", tc.name, got, tc.want)
		}
	}
}

func newFull(t *testing.T) *Full {
	first, last, err := ParseRange("192.168.1.100-192.168.1.102")
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	return &Full{
		Hosts:  hosts,
		Boot:   boot,
		Subnet: netip.MustParsePrefix("192.168.1.0/24"),
		Router: netip.MustParseAddr("192.168.1.1"),
		DNS:    []netip.Addr{netip.MustParseAddr("192.168.1.1")},
		Pool:   NewPool(first, last, []netip.Addr{gate, netip.MustParseAddr("192.168.1.101")}, func() time.Time { return clock }),
	}
}

func TestFull(t *testing.T) {
	f := newFull(t)
	log := quiet()
	full := func(typ, yiaddr, file, vendor string, opt43 []byte) *summary {
		s := &summary{Type: typ, YourIP: yiaddr, ServerIP: "0.0.0.0", ServerID: "192.168.1.10", Mask: "255.255.255.0",
			Router: "192.168.1.1", DNS: "192.168.1.1", NTP: "[192.168.1.10]", LeaseTime: DefaultLeaseTime}
		if file != "" {
			s.ServerIP, s.File, s.Opt67, s.Vendor, s.Opt43 = "192.168.1.10", file, file, vendor, opt43
			if !strings.HasPrefix(file, "http") {
				s.TFTPName = "192.168.1.10"
			}
		}
		return s
	}
	laptop := mustMAC("02:00:00:00:00:01")
	phone := mustMAC("02:00:00:00:00:02")
	for _, tc := range []struct {
		name string
		req  *dhcpv4.DHCPv4
		want *summary
	}{
		{"known bios pxe: static address + boot file", request(t, dhcpv4.MessageTypeDiscover, macBIOS, pxeBIOS...),
			full("OFFER", "192.168.1.12", "undionly.kpxe", "PXEClient", []byte{6, 1, 8, 255})},
		{"known machine ack", request(t, dhcpv4.MessageTypeRequest, macUEFI, append(pxeUEFI, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(192, 168, 1, 11))))...),
			full("ACK", "192.168.1.11", "ipxe.efi", "PXEClient", []byte{6, 1, 8, 255})},
		{"ipxe gets the script", request(t, dhcpv4.MessageTypeDiscover, macUEFI, append(pxeUEFI, dhcpv4.WithUserClass("iPXE", false))...),
			full("OFFER", "192.168.1.11", "http://192.168.1.10:8080/boot.ipxe", "PXEClient", []byte{6, 1, 8, 255})},
		{"gate: address, no boot", request(t, dhcpv4.MessageTypeDiscover, macGate, pxeUEFI...),
			full("OFFER", "192.168.1.10", "", "", nil)},
		{"unknown pxe client: nothing", request(t, dhcpv4.MessageTypeDiscover, macLost, pxeBIOS...), nil},
		{"laptop: range lease", request(t, dhcpv4.MessageTypeDiscover, laptop), full("OFFER", "192.168.1.100", "", "", nil)},
		{"laptop takes it", request(t, dhcpv4.MessageTypeRequest, laptop, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(192, 168, 1, 100)))),
			full("ACK", "192.168.1.100", "", "", nil)},
		{"phone: next free, skipping a plan address", request(t, dhcpv4.MessageTypeDiscover, phone), full("OFFER", "192.168.1.102", "", "", nil)},
		{"phone asks for the laptop's address", request(t, dhcpv4.MessageTypeRequest, phone, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(192, 168, 1, 100)))),
			&summary{Type: "NAK", YourIP: "0.0.0.0", ServerIP: "0.0.0.0", ServerID: "192.168.1.10"}},
		{"known machine asks for a wrong address", request(t, dhcpv4.MessageTypeRequest, macBIOS, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(192, 168, 1, 150)))),
			&summary{Type: "NAK", YourIP: "0.0.0.0", ServerIP: "0.0.0.0", ServerID: "192.168.1.10"}},
		{"request for another server", request(t, dhcpv4.MessageTypeRequest, phone, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(192, 168, 1, 1)))), nil},
		{"inform: options only, the gate as NTP server", request(t, dhcpv4.MessageTypeInform, laptop, dhcpv4.WithClientIP(net.IPv4(192, 168, 1, 100))),
			&summary{Type: "ACK", YourIP: "0.0.0.0", ServerIP: "0.0.0.0", ServerID: "192.168.1.10", Mask: "255.255.255.0",
				Router: "192.168.1.1", DNS: "192.168.1.1", NTP: "[192.168.1.10]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := f.Reply(PacketLog(log, tc.req), tc.req, ViaDHCP)
			if diff := cmp.Diff(tc.want, summarize(got)); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
		})
	}
	if diff := cmp.Diff([]Lease{{MAC: laptop.String(), Addr: netip.MustParseAddr("192.168.1.100"), Expires: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}}, f.Pool.Leases(),
		cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("leases (-want +got):\n%s", diff)
	}
}

func TestPoolExhausted(t *testing.T) {
	f := newFull(t)
	for i, want := range []string{"192.168.1.100", "192.168.1.102", ""} {
		mac := net.HardwareAddr{2, 0, 0, 0, 1, byte(i)}
		got := summarize(f.Reply(quiet(), request(t, dhcpv4.MessageTypeDiscover, mac), ViaDHCP))
		if want == "" {
			if got != nil {
				t.Fatalf("offer from an exhausted range: %+v", got)
			}
			continue
		}
		if got == nil || got.YourIP != want {
			t.Fatalf("client %d: offer %+v, want %s", i, got, want)
		}
	}
}

func TestVendorArch(t *testing.T) {
	for in, want := range map[string]int{
		"PXEClient:Arch:00000:UNDI:002001":  0,
		"PXEClient:Arch:00007:UNDI:003016":  7,
		"HTTPClient:Arch:00016:UNDI:003001": 16,
		"PXEClient":                         -1,
		"PXEClient:Arch:":                   -1,
		"PXEClient:Arch:99999999":           -1,
	} {
		a, ok := vendorArch(in)
		got := int(a)
		if !ok {
			got = -1
		}
		if got != want {
			t.Errorf("vendorArch(%q) = %d, want %d", in, got, want)
		}
	}
}

func FuzzRespond(f *testing.F) {
	tb := &testing.T{}
	for _, mods := range [][]dhcpv4.Modifier{pxeBIOS, pxeUEFI, nil, {dhcpv4.WithUserClass("iPXE", false)}} {
		f.Add(request(tb, dhcpv4.MessageTypeDiscover, macBIOS, mods...).ToBytes())
		f.Add(request(tb, dhcpv4.MessageTypeRequest, macLost, mods...).ToBytes())
	}
	f.Add([]byte{})
	f.Add([]byte{1, 1, 6, 0})
	log := quiet()
	peer := &net.UDPAddr{IP: net.IPv4zero, Port: 68}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, h := range []Handler{&Proxy{Hosts: hosts, Boot: boot}, newFull(t)} {
			for _, via := range []Via{ViaDHCP, ViaProxy} {
				reply, dst := Respond(h, log, b, peer, via, ClientPort)
				if reply != nil {
					if dst == nil {
						t.Fatal("reply without destination")
					}
					if _, err := dhcpv4.FromBytes(reply); err != nil {
						t.Fatalf("reply does not parse: %v", err)
					}
				}
			}
		}
	})
}
