package httpd

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/kilnlab/kiln/image/bundle"
	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/pxe/api"
	"github.com/kilnlab/kiln/pxe/state"
)

// bootAttempts is how often /boot.ipxe tries to chain the machine script.
const bootAttempts = 5

// BootScript is /boot.ipxe: the same for every machine. It chains to the
// machine's own script by the MAC of the NIC that booted (${mac}, right on
// multi-NIC machines). iPXE can finish DHCP before the proxyDHCP reply or
// the gate can be briefly unreachable, so it retries, renewing DHCP
// between attempts, and finally exits so the firmware tries the disk.
func BootScript(gateURL string) string {
	return fmt.Sprintf(`#!ipxe
# kiln boot script: chain this machine's script, chosen by MAC and state.
set kiln-try:int8 0
:retry
chain --autofree --replace %[1]s/ipxe/${mac} ||
inc kiln-try
iseq ${kiln-try} %[2]d && goto give-up ||
echo kiln: %[1]s did not answer (attempt ${kiln-try} of %[2]d), retrying
sleep 3
dhcp ||
goto retry
:give-up
echo kiln: gate %[1]s unreachable, booting the local disk
sleep 5
%[3]s
`, gateURL, bootAttempts, exitToDisk)
}

// exitToDisk leaves iPXE so that the firmware boots the next device, the
// disk. UEFI firmware (EDK2/OVMF, Dell, Lenovo) stops at its boot menu
// when a boot option returns success, and tries the next one on an error:
// so EFI exits with status 1. BIOS ignores the status.
const exitToDisk = "iseq ${platform} efi && exit 1 || exit"

// ExitScript sends the firmware on to the next boot device: the disk.
func ExitScript(why string) string {
	return "#!ipxe\n# kiln: " + oneLine(why) + "\necho kiln: " + oneLine(why) + ", booting the local disk\n" + exitToDisk + "\n"
}

// InstallCmdline is the installer's kernel command line, per contract.
func InstallCmdline(gateURL, mac, token string) string {
	return fmt.Sprintf("kiln.mode=install kiln.gate=%s kiln.mac=%s kiln.token=%s console=tty0 console=ttyS0,115200",
		gateURL, mac, token)
}

// InstallScript boots m's installer. Under UEFI the kernel's EFI stub
// finds the initramfs only through an initrd= argument naming it (the
// iPXE in Debian bookworm predates the LoadFile2 initrd protocol), so EFI
// boots append initrd=initrd to the contract's command line.
func InstallScript(gateURL string, m *plan.Machine, mac, token string) string {
	kernel := gateURL + api.PathFiles + bundle.Kernel(m.Arch)
	initrd := gateURL + api.PathFiles + bundle.Initramfs(m.Arch)
	cmdline := InstallCmdline(gateURL, mac, token)
	return fmt.Sprintf(`#!ipxe
# kiln: install %[1]s (%[2]s, role %[3]s)
echo kiln: installing %[1]s
iseq ${platform} efi && goto efi ||
kernel %[4]s %[6]s
goto initrd
:efi
kernel %[4]s %[6]s initrd=initrd
:initrd
initrd --name initrd %[5]s
boot
`, oneLine(m.Name), mac, oneLine(m.Role), kernel, initrd, cmdline)
}

func oneLine(s string) string { return strings.NewReplacer("\n", " ", "\r", " ").Replace(s) }

func (s *Server) bootScript(w http.ResponseWriter, r *http.Request) {
	writeScript(w, BootScript(s.cfg.GateURL))
}

func writeScript(w http.ResponseWriter, script string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprint(w, script)
}

// machineScript is /ipxe/{mac}: install, or exit to the disk.
func (s *Server) machineScript(w http.ResponseWriter, r *http.Request) {
	log := s.reqLog(r)
	mac, m, err := s.machine(r)
	if err != nil {
		log.Warn("ipxe: not booting an unknown machine", "mac", r.PathValue("mac"), "err", err)
		writeScript(w, ExitScript("unknown machine"))
		return
	}
	log = log.With("mac", mac, "machine", m.Name)
	if ok, why := Netboot(s.cfg.Plan, m); !ok {
		log.Warn("ipxe: machine is never netbooted", "reason", why)
		writeScript(w, ExitScript(m.Name+" is never netbooted"))
		return
	}
	// Every power-on of a kiln machine comes here first: the gate's
	// record of it is the start of the machine's time to healthy.
	rec, err := s.cfg.States.MarkNetbooted(mac, m.Name)
	if err != nil {
		log.Error("ipxe: recording the netboot", "err", err)
		writeScript(w, ExitScript("gate state unwritable"))
		return
	}
	switch rec.State {
	case state.Install:
	case state.Installing:
		// Its disk cannot boot (the installer writes the boot loader
		// last): only a new install helps, up to state.MaxAttempts.
		log.Warn("ipxe: machine netbooted mid-install: starting over with a new token", "attempts", rec.Attempts)
	default:
		log.Info("ipxe: exit to disk", "state", rec.State)
		writeScript(w, ExitScript(m.Name+" is "+rec.State))
		return
	}
	token, err := s.cfg.States.ArmToken(mac, m.Name)
	if errors.Is(err, state.ErrTooManyAttempts) {
		log.Error("ipxe: not installing again", "err", err)
		writeScript(w, ExitScript(m.Name+": "+err.Error()))
		return
	}
	if err != nil {
		log.Error("ipxe: arming install token", "err", err)
		writeScript(w, ExitScript("gate could not arm the install"))
		return
	}
	log.Info("ipxe: install script served")
	writeScript(w, InstallScript(s.cfg.GateURL, m, mac, token))
}
