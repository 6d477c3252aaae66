//! Step 1, Certificate: choose the host devices will use, generate the CA and server certificate,
//! see what devices will see, renew, export.

mod details;
mod export;

use super::{Step, StepStatus, widgets};
use crate::worker::{Command, Event, Worker};
use otaforge_pki::{CertReport, Host, IssueRequest, KeyKind, TrustMode, local::LocalHosts};

pub use export::{EXPORT_HEADER, EXPORT_PEM, HEADER_FIELD, PEM_FIELD};

/// Label of the button that makes the material (tests find it by this text).
pub const GENERATE: &str = "Generate cert";
/// Label of the host field.
pub const HOST_FIELD: &str = "Update-server host";

/// What the Certificate step remembers between runs.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Remembered {
    hosts: String,
    key: KeyKind,
    pin_leaf: bool,
    export: export::ExportPaths,
}

/// State of the Certificate step.
pub struct CertificateStep {
    form: Remembered,
    /// The loaded material, once known.
    pub report: Option<Box<CertReport>>,
    loaded: bool,
    busy: Option<&'static str>,
    /// The last failure, in words.
    pub error: Option<String>,
    notice: Option<String>,
    pub(super) local: Option<LocalHosts>,
    host_check: Option<(Host, bool, String)>,
    confirm_replace: bool,
    /// The update-signing keys.
    pub signing: super::signing_key::SigningKeySection,
    pub(super) export: export::ExportSection,
}

impl CertificateStep {
    pub(super) fn new(form: Remembered, worker: &Worker) -> Self {
        worker.send(Command::LoadCertificate { hosts: Vec::new() });
        worker.send(Command::DiscoverHosts);
        CertificateStep {
            export: export::ExportSection::new(form.export.clone()),
            form,
            report: None,
            loaded: false,
            busy: Some("Loading certificates…"),
            error: None,
            notice: None,
            local: None,
            host_check: None,
            confirm_replace: false,
            signing: super::signing_key::SigningKeySection::new(worker),
        }
    }

    pub(super) fn remembered(&self) -> Remembered {
        Remembered { export: self.export.paths.clone(), ..self.form.clone() }
    }

    /// Whether the material has been read since the window opened (until then the sidebar shows
    /// the mark it had when the window closed).
    pub(super) fn known(&self) -> bool {
        self.loaded
    }

    pub(super) fn status(&self) -> StepStatus {
        match &self.report {
            None => StepStatus::Todo,
            Some(r) if r.warnings.iter().any(|w| w.is_blocking()) => StepStatus::Attention,
            Some(_) => StepStatus::Done,
        }
    }

    pub(super) fn on_event(&mut self, event: Event, worker: &Worker) {
        let Some(event) = self.signing.on_event(event) else { return };
        let Some(event) = self.export.on_event(event) else { return };
        match event {
            Event::Certificate(report) => {
                if report.is_some() {
                    self.export.reload(worker);
                }
                if self.busy.is_some() && self.loaded {
                    self.notice = Some(match &report {
                        Some(r) if r.mode == TrustMode::PinLeaf => "Pinned certificate written.".into(),
                        Some(_) => "Certificates written.".into(),
                        None => String::new(),
                    });
                }
                if self.form.hosts.trim().is_empty()
                    && let Some(r) = &report
                {
                    self.form.hosts = r.server.dns_sans.join(", ");
                }
                self.report = report;
                self.loaded = true;
                self.busy = None;
                self.error = None;
                self.confirm_replace = false;
            }
            Event::CertificateFailed(why) => {
                self.loaded = true;
                self.busy = None;
                self.error = Some(why);
                self.notice = None;
            }
            Event::LocalHosts(hosts) => self.local = Some(hosts),
            Event::HostChecked { host, reaches_here, message } => {
                self.host_check = Some((host, reaches_here, message));
            }
            _ => {}
        }
    }

    /// The hosts typed in the field, or the first reason one is not usable.
    fn parsed_hosts(&self) -> Result<Vec<Host>, String> {
        let hosts: Vec<Host> = self
            .form
            .hosts
            .split(',')
            .filter(|h| !h.trim().is_empty())
            .map(|h| Host::parse(h).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        if hosts.is_empty() {
            return Err(otaforge_pki::HostError::Empty.to_string());
        }
        Ok(hosts)
    }

    pub(super) fn ui(&mut self, ui: &mut egui::Ui, worker: &Worker) {
        ui.heading("1. Certificate");
        ui.label(
            "A private CA for your devices and a certificate for the update server, signed by it. \
             Devices trust the CA, so the server certificate can be renewed without reflashing.",
        );
        ui.add_space(8.0);
        // Each part keeps its widgets' ids when a part above changes (this machine's addresses
        // and the keys arrive while the user may already be typing or clicking).
        widgets::section(ui, "certificate.host", |ui| self.host_form(ui, worker));
        ui.add_space(8.0);
        widgets::section(ui, "certificate.actions", |ui| self.actions(ui, worker));
        // Drawn only when there is something to say: an empty section would still add a gap.
        let status = self.busy.is_some() || self.error.is_some() || self.notice.is_some();
        widgets::section_if(ui, status, "certificate.status", |ui| {
            if let Some(busy) = self.busy {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label(busy);
                });
            }
            if let Some(err) = &self.error {
                ui.colored_label(ui.visuals().error_fg_color, format!("✖ {err}"));
            }
            if let Some(notice) = &self.notice {
                ui.label(notice);
            }
        });
        let material = self.report.is_some() || self.loaded;
        widgets::section_if(ui, material, "certificate.material", |ui| {
            if let Some(report) = &self.report {
                ui.separator();
                details::details(ui, report);
                ui.separator();
                self.export.ui(ui, worker, report.mode);
            } else if self.loaded {
                ui.separator();
                ui.label("No certificates in this project yet.");
            }
        });
        ui.separator();
        widgets::section(ui, "certificate.signing", |ui| self.signing.ui(ui, worker));
        ui.separator();
        widgets::section(ui, "certificate.next", |ui| self.next(ui));
    }

    fn next(&self, ui: &mut egui::Ui) {
        if let Some(report) = &self.report {
            let host = report.server.dns_sans.first().map_or("this server", String::as_str);
            widgets::next_step(
                ui,
                Step::Firmware,
                &format!("bake the CA and the server's name ({host}) into your firmware."),
            );
        } else {
            ui.label(
                egui::RichText::new(format!("Next: type the host above and press \"{GENERATE}\".")).strong(),
            );
        }
    }

    fn host_form(&mut self, ui: &mut egui::Ui, worker: &Worker) {
        ui.horizontal_wrapped(|ui| {
            let label = ui.label(HOST_FIELD);
            ui.add(
                egui::TextEdit::singleline(&mut self.form.hosts)
                    .hint_text("ota.lan, 192.168.1.70")
                    .desired_width(320.0),
            )
            .labelled_by(label.id)
            .on_hover_text("Names or IP addresses devices put in their update URL, separated by commas.");
            let first = self.parsed_hosts().ok().and_then(|h| h.into_iter().next());
            if ui
                .add_enabled(first.is_some(), egui::Button::new("Check name"))
                .on_hover_text("Does this host lead to this machine?")
                .clicked()
                && let Some(host) = first
            {
                self.host_check = None;
                worker.send(Command::CheckHost(host));
            }
        });
        if let Err(why) = self.parsed_hosts()
            && !self.form.hosts.trim().is_empty()
        {
            ui.colored_label(ui.visuals().warn_fg_color, why);
        }
        if let Some((host, ok, message)) = &self.host_check {
            let color = if *ok { ui.visuals().text_color() } else { ui.visuals().warn_fg_color };
            ui.colored_label(color, format!("{} {message}", if *ok { "✔" } else { "⚠" }))
                .on_hover_text(format!("Checked {host}"));
        }
        if let Some(local) = &self.local {
            let suggestions = local.suggestions();
            if suggestions.is_empty() {
                ui.label(
                    "This machine has no network address besides loopback: devices cannot reach it yet.",
                );
            } else {
                ui.horizontal_wrapped(|ui| {
                    ui.label("This machine:");
                    for host in suggestions {
                        let text = host.to_string();
                        if ui.button(format!("Use {text}")).clicked() {
                            self.form.hosts = text;
                            self.host_check = None;
                            worker.send(Command::CheckHost(host));
                        }
                    }
                });
            }
        }
        widgets::section(ui, "certificate.key", |ui| self.key_form(ui));
    }

    fn key_form(&mut self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| {
            ui.label("Key:");
            ui.radio_value(&mut self.form.key, KeyKind::EcdsaP256, "ECDSA P-256 (recommended)");
            ui.radio_value(&mut self.form.key, KeyKind::Rsa2048, "RSA 2048");
        });
        ui.checkbox(
            &mut self.form.pin_leaf,
            "Pin one self-signed certificate instead of a CA (tutorial style)",
        );
        if self.form.pin_leaf {
            ui.colored_label(
                ui.visuals().warn_fg_color,
                "Devices will trust only this exact certificate: when it expires or is replaced, every device must be reflashed over USB.",
            );
        }
    }

    fn actions(&mut self, ui: &mut egui::Ui, worker: &Worker) {
        let hosts = self.parsed_hosts();
        let idle = self.busy.is_none();
        let has_material = self.report.is_some();
        ui.horizontal_wrapped(|ui| {
            let label = if has_material { "Replace CA…" } else { GENERATE };
            if ui.add_enabled(idle && hosts.is_ok(), egui::Button::new(label)).clicked() {
                if has_material {
                    self.confirm_replace = true;
                } else {
                    self.generate(worker, false);
                }
            }
            if let Some(report) = &self.report
                && report.mode == TrustMode::PrivateCa
                && ui
                    .add_enabled(idle, egui::Button::new("Renew server certificate"))
                    .on_hover_text("New server key and certificate from the same CA; devices keep working.")
                    .clicked()
            {
                self.busy = Some("Renewing the server certificate…");
                self.notice = None;
                worker.send(Command::RenewServer {
                    hosts: hosts.clone().ok(),
                    days: otaforge_pki::DEFAULT_SERVER_DAYS,
                });
            }
        });
        if self.confirm_replace {
            egui::Frame::group(ui.style()).show(ui, |ui| {
                ui.colored_label(
                    ui.visuals().warn_fg_color,
                    "Replacing the CA strands every device that trusts the current one: they stop updating until \
                     reflashed with the new CA. To change names or dates, renew the server certificate instead. \
                     The current files move to retired/.",
                );
                ui.horizontal(|ui| {
                    if ui.button("Replace CA and server certificate").clicked() {
                        self.generate(worker, true);
                    }
                    if ui.button("Cancel").clicked() {
                        self.confirm_replace = false;
                    }
                });
            });
        }
    }

    fn generate(&mut self, worker: &Worker, replace: bool) {
        let Ok(hosts) = self.parsed_hosts() else { return };
        let mut request = IssueRequest::new(hosts);
        request.key = self.form.key;
        request.mode = if self.form.pin_leaf { TrustMode::PinLeaf } else { TrustMode::PrivateCa };
        self.busy = Some("Generating keys and certificates…");
        self.notice = None;
        self.error = None;
        self.confirm_replace = false;
        worker.send(Command::Generate { request, replace });
    }
}
