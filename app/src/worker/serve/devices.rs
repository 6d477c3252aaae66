//! Renaming and forgetting devices from the window: the store changes, and so does the running
//! server's inventory (which the list shows while it runs), so the two never disagree.

use otaforge_store::Store;

use super::super::{Event, Runner};
use super::{ServeEvent, sentence};

impl Runner {
    pub(super) async fn rename_device(&self, mac: String, name: String) {
        let server = self.server().await;
        if let Some(s) = &server {
            // A device first seen a moment ago has its row in the database before it is renamed.
            s.flush().await;
        }
        let (dir, m, n) = (self.dir.clone(), mac.clone(), name);
        let renamed = tokio::task::spawn_blocking(move || {
            let name = otaforge_store::check_user_name(&n)?;
            let known = Store::open(&dir)?.rename_device(&m, &name)?;
            Ok::<_, otaforge_store::StoreError>((known, name))
        })
        .await;
        let event = match renamed {
            Ok(Ok((true, name))) => {
                if let Some(s) = &server {
                    s.inventory().set_user_name(&mac, &name);
                }
                ServeEvent::Done(if name.is_empty() {
                    format!("{mac} is shown under the name it reports again.")
                } else {
                    format!("{mac} is now shown as \"{name}\".")
                })
            }
            Ok(Ok((false, _))) => ServeEvent::Failed(format!("{mac} is not in the inventory (forgotten?).")),
            Ok(Err(e)) => ServeEvent::Failed(format!("Could not rename {mac}: {e}.")),
            Err(e) => ServeEvent::Failed(format!("internal error: {e}")),
        };
        self.emit(Event::Serve(event));
        self.send_devices().await;
    }

    pub(super) async fn forget_device(&self, mac: String) {
        let server = self.server().await;
        let mut held = false;
        if let Some(s) = &server {
            held = s.inventory().forget(&mac);
            // Saves of it still queued land first, so the delete below is the last word.
            s.flush().await;
        }
        let (dir, m) = (self.dir.clone(), mac.clone());
        let forgotten =
            tokio::task::spawn_blocking(move || Store::open(&dir).and_then(|mut s| s.forget_device(&m)))
                .await;
        let event = match forgotten {
            Ok(Ok(stored)) if stored || held => {
                ServeEvent::Done(format!("Forgot {mac}: if it still runs, it reappears at its next check."))
            }
            Ok(Ok(_)) => ServeEvent::Failed(format!("{mac} is not in the inventory.")),
            Ok(Err(e)) => ServeEvent::Failed(sentence(&format!(
                "could not forget {mac}: {e}{}",
                if held { " (the running server no longer lists it; the database still does)" } else { "" }
            ))),
            Err(e) => ServeEvent::Failed(format!("internal error: {e}")),
        };
        self.emit(Event::Serve(event));
        self.send_devices().await;
    }

    /// Sends the device list as it is now.
    async fn send_devices(&self) {
        let devices = self.live_devices().await;
        self.emit(Event::Serve(ServeEvent::Devices(devices)));
    }
}
