package firstboot

// BinaryPath is where image/rootfs installs kiln-firstboot in a role OS.
const BinaryPath = "/usr/local/sbin/kiln-firstboot"

// UnitName is the systemd unit image/rootfs installs and enables.
const UnitName = "kiln-firstboot.service"

// Unit is kiln-firstboot.service. It runs at every boot: finished tasks
// are recorded and skipped, so a boot after a power cut finishes the job.
const Unit = `[Unit]
Description=kiln first boot (grow state, wait for the address, report to the gate)
Wants=network-online.target
After=network-online.target local-fs.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=` + BinaryPath + `
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
`
