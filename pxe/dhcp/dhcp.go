// Package dhcp owns the gate's DHCP answers to netbooting machines, in two
// modes, each a handler struct behind one UDP loop (after tinkerbell/smee):
//
//   - Proxy (the default): another DHCP server (the ISP box) hands out
//     addresses; the gate answers PXE clients only with the boot options —
//     no address, siaddr and option 54 set to the gate, option 60
//     "PXEClient", option 43 (PXE discovery control: boot the named file,
//     no boot server discovery), and the boot file in both option 67 and
//     the BOOTP file field (U-Boot reads only the latter). It answers on
//     port 67 and on 4011, where many UEFI and iPXE clients send their
//     ProxyDHCP request.
//   - Full: the gate is the lab's DHCP server. Machines of the plan get
//     their profile address; other clients get a lease from the profile's
//     range and no boot options. Every client gets option 42 naming the
//     gate as its NTP server (the gate serves time: package ntp); proxy
//     replies carry no such option, as the ISP box owns the leases and
//     their options.
//
// In both modes a netboot client whose MAC is not in the plan gets no
// answer at all (logged): kiln never boots a machine it does not know. The
// gate itself and Raspberry Pi boards are never netbooted.
//
// The boot file is chosen by client: iPXE (user class "iPXE") gets the
// gate's HTTP boot script; otherwise by architecture, from option 93 or,
// when firmware omits it, option 60's "Arch:NNNNN": 0 (BIOS) ->
// undionly.kpxe over TFTP, 7/9 (UEFI x64) -> ipxe.efi (or snponly.efi),
// 16 (UEFI HTTP boot) -> the same binary as an HTTP URL.
package dhcp

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// Via says on which of the gate's DHCP ports a request arrived.
type Via int

const (
	// ViaDHCP: UDP 67, broadcast from clients without an address.
	ViaDHCP Via = iota
	// ViaProxy: UDP 4011, the PXE ProxyDHCP port, unicast.
	ViaProxy
)

// Default ports.
const (
	ServerPort = 67
	ProxyPort  = 4011
	ClientPort = 68
)

// Host is what the gate knows about a MAC.
type Host struct {
	Name string
	// Addr is the machine's static address (full mode).
	Addr netip.Addr
	// Netboot is false for machines kiln must never netboot (the gate
	// itself, Raspberry Pi boards); Reason says why.
	Netboot bool
	Reason  string
}

// Hosts resolves MACs to the plan's machines.
type Hosts interface {
	Host(mac net.HardwareAddr) (Host, bool)
}

// Handler answers one request; nil means no answer.
type Handler interface {
	Reply(log *slog.Logger, req *dhcpv4.DHCPv4, via Via) *dhcpv4.DHCPv4
}

// Boot says where a client's first stage lives.
type Boot struct {
	// Server is the gate's address on the lab network.
	Server netip.Addr
	// HTTPPort is the gate's HTTP port (boot script, bundle files).
	HTTPPort int
	// UEFIFile is the TFTP file for UEFI x64 firmware: "ipxe.efi" (the
	// default) or "snponly.efi" (uses the firmware's own NIC driver).
	UEFIFile string
}

// BootScript is the iPXE script every iPXE client is pointed at.
func (b Boot) BootScript() string { return b.httpURL("/boot.ipxe") }

func (b Boot) httpURL(path string) string {
	return "http://" + netip.AddrPortFrom(b.Server, uint16(b.HTTPPort)).String() + path
}

func (b Boot) uefiFile() string {
	if b.UEFIFile == "" {
		return "ipxe.efi"
	}
	return b.UEFIFile
}

// Client is what a request says about the firmware sending it.
type Client struct {
	// Vendor is option 60 as sent.
	Vendor string
	// PXE: option 60 starts with "PXEClient"; HTTP: with "HTTPClient".
	PXE, HTTP bool
	// IPXE: user class (option 77) "iPXE".
	IPXE bool
	// Arch from option 93, else from option 60's "Arch:NNNNN".
	Arch    iana.Arch
	HasArch bool
}

// Netboot reports whether the client asks to netboot at all.
func (c Client) Netboot() bool { return c.PXE || c.HTTP || c.IPXE }

// Classify reads the netboot options of a request.
func Classify(req *dhcpv4.DHCPv4) Client {
	c := Client{Vendor: req.ClassIdentifier()}
	c.PXE = strings.HasPrefix(c.Vendor, "PXEClient")
	c.HTTP = strings.HasPrefix(c.Vendor, "HTTPClient")
	for _, uc := range req.UserClass() {
		if uc == "iPXE" {
			c.IPXE = true
		}
	}
	if archs := req.ClientArch(); len(archs) > 0 {
		c.Arch, c.HasArch = archs[0], true
	} else if a, ok := vendorArch(c.Vendor); ok {
		c.Arch, c.HasArch = a, true
	}
	return c
}

// vendorArch parses "PXEClient:Arch:00007:UNDI:003016" (RFC 4578's
// vendor class), for firmware (some EDK2 builds) that omits option 93.
func vendorArch(vendor string) (iana.Arch, bool) {
	fields := strings.Split(vendor, ":")
	for i := 0; i+1 < len(fields); i++ {
		if fields[i] != "Arch" {
			continue
		}
		n, err := strconv.ParseUint(fields[i+1], 10, 16)
		if err != nil {
			return 0, false
		}
		return iana.Arch(n), true
	}
	return 0, false
}

// ErrUnsupportedArch: kiln has no first stage for this firmware.
var ErrUnsupportedArch = errors.New("no boot file for this client architecture")

// BootFile is the boot file for a client and the option 60 to answer with.
type BootFile struct {
	Name   string // TFTP file name or http URL
	Vendor string // "PXEClient" or "HTTPClient"
	TFTP   bool
}

// File picks a client's boot file.
func (b Boot) File(c Client) (BootFile, error) {
	if c.IPXE {
		return BootFile{Name: b.BootScript(), Vendor: "PXEClient"}, nil
	}
	if !c.HasArch {
		// No option 93 and nothing usable in option 60: classic BIOS PXE
		// sends both, so a client with neither is too odd to guess for.
		return BootFile{}, fmt.Errorf("%w: none sent (option 60 %q)", ErrUnsupportedArch, c.Vendor)
	}
	switch c.Arch {
	case iana.INTEL_X86PC:
		return BootFile{Name: "undionly.kpxe", Vendor: "PXEClient", TFTP: true}, nil
	case iana.EFI_X86_64, iana.EFI_BC:
		return BootFile{Name: b.uefiFile(), Vendor: "PXEClient", TFTP: true}, nil
	case iana.EFI_X86_64_HTTP:
		// UEFI HTTP boot requires "HTTPClient" back in option 60.
		return BootFile{Name: b.httpURL("/files/tftp/" + b.uefiFile()), Vendor: "HTTPClient"}, nil
	}
	return BootFile{}, fmt.Errorf("%w: %d (%s)", ErrUnsupportedArch, uint16(c.Arch), c.Arch)
}

// pxeVendorOptions is option 43 for PXE clients: sub-option 6 (discovery
// control) = 8, "boot the file named in this reply, skip boot server
// discovery", then the end marker. EDK2 and Intel PXE ROMs want option 43
// in a ProxyDHCP offer before they act on it.
var pxeVendorOptions = []byte{6, 1, 8, 255}

// withBoot adds the boot options for bf to a reply.
func withBoot(reply, req *dhcpv4.DHCPv4, b Boot, bf BootFile) {
	reply.ServerIPAddr = net.IP(b.Server.AsSlice())
	reply.BootFileName = bf.Name
	reply.UpdateOption(dhcpv4.OptBootFileName(bf.Name))
	reply.UpdateOption(dhcpv4.OptClassIdentifier(bf.Vendor))
	if bf.TFTP {
		reply.UpdateOption(dhcpv4.OptTFTPServerName(b.Server.String()))
	}
	if bf.Vendor == "PXEClient" {
		reply.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, pxeVendorOptions))
	}
	// PXE clients expect their machine identifier (GUID) echoed back.
	if guid := req.GetOneOption(dhcpv4.OptionClientMachineIdentifier); guid != nil {
		reply.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, guid))
	}
}

// PacketLog scopes a logger to one request.
func PacketLog(log *slog.Logger, req *dhcpv4.DHCPv4) *slog.Logger {
	return log.With("mac", req.ClientHWAddr.String(), "xid", req.TransactionID.String())
}

// Respond is the whole path from received bytes to the bytes to send and
// where: parse, sanity checks, the handler, the destination. A nil reply
// means stay silent. It must never panic, whatever buf holds (FuzzRespond).
func Respond(h Handler, log *slog.Logger, buf []byte, peer *net.UDPAddr, via Via, clientPort int) ([]byte, *net.UDPAddr) {
	req, err := dhcpv4.FromBytes(buf)
	if err != nil {
		log.Debug("dhcp: unparsable packet", "peer", peer.String(), "err", err)
		return nil, nil
	}
	if req.OpCode != dhcpv4.OpcodeBootRequest || req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6 {
		return nil, nil
	}
	plog := PacketLog(log, req)
	reply := h.Reply(plog, req, via)
	if reply == nil {
		return nil, nil
	}
	return reply.ToBytes(), destination(req, peer, via, clientPort)
}

// destination is RFC 2131 §4.1's choice, plus ProxyDHCP's rule that a
// request on 4011 is answered to its sender.
func destination(req *dhcpv4.DHCPv4, peer *net.UDPAddr, via Via, clientPort int) *net.UDPAddr {
	if via == ViaProxy && peer != nil && !peer.IP.IsUnspecified() {
		return peer
	}
	if ip := req.GatewayIPAddr.To4(); ip != nil && !ip.IsUnspecified() {
		return &net.UDPAddr{IP: ip, Port: ServerPort}
	}
	if ip := req.ClientIPAddr.To4(); ip != nil && !ip.IsUnspecified() {
		return &net.UDPAddr{IP: ip, Port: clientPort}
	}
	// No address yet: broadcast (a unicast to yiaddr would need an ARP
	// entry the client cannot answer for yet).
	return &net.UDPAddr{IP: net.IPv4bcast, Port: clientPort}
}

// newReply starts a reply of type mt from the gate.
func newReply(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType, server netip.Addr) (*dhcpv4.DHCPv4, error) {
	return dhcpv4.NewReplyFromRequest(req,
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(server.AsSlice()))),
	)
}

// fromUs reports whether a request names the gate as its server (option
// 54), or names none.
func fromUs(req *dhcpv4.DHCPv4, server netip.Addr) (named, us bool) {
	sid := req.ServerIdentifier()
	if sid == nil {
		return false, false
	}
	a, ok := netip.AddrFromSlice(sid.To4())
	return true, ok && a == server
}
