package firstboot

// BinaryPath is where image/rootfs installs kiln-firstboot in a role OS.
const BinaryPath = "/usr/local/sbin/kiln-firstboot"

// UnitName is the systemd unit image/rootfs installs and enables.
const UnitName = "kiln-firstboot.service"

// Unit is kiln-firstboot.service. It runs at every boot: finished tasks
// are recorded and skipped, so a boot after a power cut finishes the job.
// A failed phase is retried without a reboot: the service restarts on
// failure every RestartSec, with no start limit (systemd's default gives
// up after 5 starts in 10 s, which would leave a failed phase failed
// until someone reboots), so the gate's page shows the phase failing
// with its error and its attempts counting up, never silently skipped.
// Type=oneshot allows Restart=on-failure since systemd 244 (bookworm has
// 252).
const Unit = `[Unit]
Description=kiln first boot (grow state, wait for the address, report to the gate)
Wants=network-online.target
After=network-online.target local-fs.target
StartLimitIntervalSec=0

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=` + BinaryPath + `
Restart=on-failure
RestartSec=30s
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
`
