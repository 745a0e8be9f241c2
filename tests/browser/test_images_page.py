"""The Images page in Chromium against a real region importing from a fake upstream.

The tests share one region and run in file order: each leaves the selections as
the next expects (noble amd64 selected, as the region's default).
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.browser.conftest import ADMIN, LOCKED, RACK_HOSTNAME, SHOTS, RegionProcess, login

pytestmark = [pytest.mark.slow, pytest.mark.browser]

PAGE = "/MAAS/r/images"
UPLOAD = bytes(range(256)) * ((9 << 20) // 256) + b"end"  # three 4 MiB chunks


def status_cell(page: Page, image: str) -> Locator:
    """The status text of one image in the status table."""
    return page.locator(f'[data-status-of="{image}"] .status-text')


def test_root_redirects_to_login_then_images_and_shows_synced(
    admin_page: Page, region: RegionProcess
) -> None:
    """/MAAS/ leads through the login form to /MAAS/r/images, where the imported images are Synced."""
    page = admin_page
    assert page.url.endswith(PAGE)
    expect(status_cell(page, "ubuntu/noble amd64/ga-24.04")).to_have_text("Synced", timeout=60_000)
    cookie = next(c for c in page.context.cookies() if c["name"] == "bootsync_session")
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Lax"
    page.screenshot(path=str(SHOTS / "images-page-idle.png"), full_page=True)


def test_keyboard_save_selection_shows_live_download_then_synced(
    admin_page: Page, region: RegionProcess
) -> None:
    """Ticking jammy amd64 and saving by keyboard starts an import whose progress appears without reload."""
    page = admin_page
    region.upstream.stall("/jammy/amd64/20250718/squashfs", after_bytes=128 << 10, seconds=6)
    box = page.get_by_label("Ubuntu 22.04 LTS amd64")
    box.focus()
    page.keyboard.press("Space")
    expect(box).to_be_checked()
    page.get_by_role("button", name="Save selection").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"notice=selection-saved"))
    expect(page.locator("#notice")).to_contain_text("Selection saved")
    page.evaluate("window.__noReload = true")
    expect(page.locator("#import-banner")).to_be_visible()
    cell = status_cell(page, "ubuntu/jammy amd64/ga-22.04")
    expect(cell).to_have_text(re.compile(r"Downloading\s+\d+%"), timeout=30_000)
    page.screenshot(path=str(SHOTS / "images-page-importing.png"), full_page=True)
    expect(cell).to_have_text("Synced", timeout=60_000)
    expect(page.locator("#import-banner")).to_have_count(0, timeout=30_000)
    assert page.evaluate("window.__noReload") is True
    expect(page.locator("#announcer")).to_contain_text("ubuntu/jammy amd64/ga-22.04")


def test_failed_import_shows_reason_and_unticking_removes_the_image(
    admin_page: Page, region: RegionProcess
) -> None:
    """An image whose file upstream fails shows Failed with the reason; un-ticking it and saving removes it."""
    page = admin_page
    region.upstream.fail("/noble/arm64/20250718/squashfs", status=404, times=10_000)
    page.get_by_label("Ubuntu 24.04 LTS arm64").check()
    page.get_by_role("button", name="Save selection").click()
    page.wait_for_url(re.compile(r"notice=selection-saved"))
    expect(page.locator("#import-errors")).to_contain_text("404", timeout=60_000)
    expect(page.locator('[data-status-of^="ubuntu/noble arm64"] .status-text')).to_have_text(
        "Failed", timeout=30_000
    )
    region.upstream.fail("/noble/arm64/20250718/squashfs", status=404, times=0)
    page.reload()
    page.get_by_label("Ubuntu 24.04 LTS arm64").uncheck()
    page.get_by_label("Ubuntu 22.04 LTS amd64").uncheck()
    page.get_by_role("button", name="Save selection").click()
    page.wait_for_url(re.compile(r"notice=selection-saved"))
    expect(page.locator('[data-status-of^="ubuntu/noble arm64"]')).to_have_count(0, timeout=60_000)
    expect(page.locator('[data-status-of="ubuntu/jammy amd64/ga-22.04"]')).to_have_count(
        0, timeout=60_000
    )


def test_unticking_the_commissioning_release_needs_confirmation(
    admin_page: Page, region: RegionProcess
) -> None:
    """Un-ticking noble (the commissioning release) is refused with a warning and saves nothing."""
    page = admin_page
    expect(page.locator("#import-banner")).to_have_count(0, timeout=60_000)
    page.get_by_label("Ubuntu 24.04 LTS amd64").uncheck()
    page.get_by_role("button", name="Save selection").click()
    expect(page.locator("#error-ubuntu-noble")).to_contain_text("commissioning release")
    expect(page.get_by_label("Remove it anyway")).to_be_visible()
    page.goto(region.url + PAGE)
    expect(page.get_by_label("Ubuntu 24.04 LTS amd64")).to_be_checked()


def test_stop_import_stops_a_slow_import(admin_page: Page, region: RegionProcess) -> None:
    """While a download stalls upstream the banner offers Stop import; clicking it stops the import."""
    page = admin_page
    expect(page.locator("#import-banner")).to_have_count(0, timeout=60_000)
    region.upstream.stall("/jammy/arm64/20250718/squashfs", after_bytes=64 << 10, seconds=20)
    page.get_by_label("Ubuntu 22.04 LTS arm64").check()
    page.get_by_role("button", name="Save selection").click()
    page.wait_for_url(re.compile(r"notice=selection-saved"))
    stop = page.locator("#import-banner").get_by_role("button", name="Stop import")
    expect(stop).to_be_visible()
    expect(status_cell(page, "ubuntu/jammy arm64/ga-22.04")).to_have_text(
        re.compile(r"Downloading"), timeout=30_000
    )
    stop.click()
    page.wait_for_url(re.compile(r"notice=import-stopped"))
    expect(page.locator("#notice")).to_have_text("The import was stopped.")
    expect(page.locator("#import-banner")).to_have_count(0, timeout=15_000)
    expect(page.locator("#last-import")).to_contain_text("Stopped", timeout=15_000)
    page.get_by_label("Ubuntu 22.04 LTS arm64").uncheck()  # back to noble amd64 alone
    page.get_by_role("button", name="Save selection").click()
    page.wait_for_url(re.compile(r"notice=selection-saved"))
    expect(page.locator('[data-status-of^="ubuntu/jammy arm64"]')).to_have_count(0, timeout=60_000)
    expect(page.locator("#import-banner")).to_have_count(0, timeout=60_000)


def test_custom_source_form_connect_and_bad_url(admin_page: Page, region: RegionProcess) -> None:
    """Custom shows the URL and advanced keyring fields; Connect lists an unsaved mirror or says why not."""
    page = admin_page
    page.get_by_role("radio", name="Custom").check()
    page.get_by_text("Show advanced options").click()
    page.get_by_label("URL", exact=True).fill(region.upstream.url("/"))
    page.get_by_label("Keyring path (on the region)").fill(str(region.stream.keyring))
    page.get_by_role("button", name="Connect").click()
    expect(page.locator("#connect-result")).to_contain_text("22.04 LTS", timeout=30_000)
    page.screenshot(path=str(SHOTS / "images-page-custom-source.png"), full_page=True)
    page.get_by_label("URL", exact=True).fill("http://127.0.0.1:9/nothing/")
    page.get_by_role("button", name="Connect").click()
    expect(page.locator("#url-error")).to_contain_text("Could not read the source", timeout=30_000)
    page.get_by_label("Keyring path (on the region)").fill("/nonexistent/keyring.gpg")
    page.get_by_label("URL", exact=True).fill(region.upstream.url("/"))
    page.get_by_role("button", name="Save source").click()
    expect(page.locator("#keyring_filename-error")).to_be_visible()


def test_upload_goes_up_in_chunks_with_a_progress_bar(admin_page: Page) -> None:
    """A 9 MiB custom image goes up as three PUT chunks, the bar climbing to 100; it is listed, then deleted."""
    page = admin_page
    puts: list[str] = []
    page.on("request", lambda r: puts.append(r.url) if r.method == "PUT" else None)
    page.evaluate(
        """() => {
            const bar = document.getElementById('upload-progress');
            window.__progress = [];
            new MutationObserver(() => window.__progress.push(Number(bar.value)))
                .observe(bar, {attributes: true, attributeFilter: ['value']});
        }"""
    )
    page.get_by_label("Name", exact=True).fill("browser-image")
    page.get_by_label("Title", exact=True).fill("Browser image")
    page.get_by_label("File", exact=True).set_input_files(
        {"name": "browser.tgz", "mimeType": "application/gzip", "buffer": UPLOAD}
    )
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page.locator("#upload-status")).to_have_text("Uploaded browser-image.", timeout=30_000)
    expect(page.locator("#upload-progress")).to_be_visible()
    assert len(puts) == 3
    assert all("/MAAS/r/images/custom/upload/" in url for url in puts)
    progress = page.evaluate("window.__progress")
    assert progress[-1] == 100
    assert any(0 < value < 100 for value in progress)
    row = page.locator("#custom-table tr", has_text="browser-image")
    expect(row).to_contain_text("9.4 MB", timeout=30_000)
    row.get_by_role("button", name="Delete browser-image amd64/generic").click()
    page.wait_for_url(re.compile(r"notice=image-deleted"))
    expect(page.locator("#custom-table")).not_to_contain_text("browser-image")


def test_a_duplicate_upload_name_is_explained_next_to_the_name_field(admin_page: Page) -> None:
    """Uploading as ubuntu/noble (an image the region already has) shows why under the Name field."""
    page = admin_page
    name = page.get_by_label("Name", exact=True)
    name.fill("ubuntu/noble")
    page.get_by_label("File", exact=True).set_input_files(
        {"name": "dup.tgz", "mimeType": "application/gzip", "buffer": b"not really an image"}
    )
    page.get_by_role("button", name="Upload", exact=True).click()
    error = page.locator("#up-name-error")
    expect(error).to_have_text("ubuntu/noble is a reserved name")
    expect(name).to_have_attribute("aria-invalid", "true")
    expect(name).to_have_attribute("aria-describedby", "up-name-error")
    expect(name).to_be_focused()
    expect(page.locator("#upload-error")).to_be_hidden()
    field, message = name.bounding_box(), error.bounding_box()
    title = page.get_by_label("Title", exact=True).bounding_box()
    assert field is not None
    assert message is not None
    assert title is not None
    assert field["y"] + field["height"] <= message["y"] < title["y"]
    expect(page.locator("#custom-table")).not_to_contain_text("ubuntu/noble")


def test_state_changes_without_csrf_token_are_refused(
    admin_page: Page, region: RegionProcess
) -> None:
    """A POST carrying the session cookie but no CSRF token is refused with 403 and changes nothing."""
    page = admin_page
    before = page.get_by_role("switch").get_attribute("aria-checked")
    result = page.evaluate(
        """async () => {
            const r = await fetch('/MAAS/r/images/auto-import', {method: 'POST',
                headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: 'enabled=false'});
            return [r.status, await r.text()];
        }"""
    )
    assert result[0] == 403
    assert "security token" in result[1]
    page.reload()
    assert page.get_by_role("switch").get_attribute("aria-checked") == before


def test_hourly_sync_switch_toggles_the_setting(admin_page: Page, region: RegionProcess) -> None:
    """The top-right switch turns boot_images_auto_import off and on again."""
    page = admin_page
    switch = page.get_by_role("switch")
    expect(switch).to_have_attribute("aria-checked", "true")
    switch.click()
    expect(page.get_by_role("switch")).to_have_attribute("aria-checked", "false")
    expect(page.locator(".sync-times")).to_contain_text("none (off)")
    page.get_by_role("switch").click()
    expect(page.get_by_role("switch")).to_have_attribute("aria-checked", "true")


def test_viewer_sees_the_page_read_only(viewer_page: Page, region: RegionProcess) -> None:
    """A non-admin sees images and statuses but no enabled control, and a forged POST is refused."""
    page = viewer_page
    expect(page.locator("#readonly-note")).to_be_visible()
    expect(page.get_by_label("Ubuntu 24.04 LTS amd64")).to_be_disabled()
    expect(page.get_by_role("button", name="Save selection")).to_have_count(0)
    expect(page.get_by_role("switch")).to_be_disabled()
    status = page.evaluate(
        """async () => {
            const csrf = document.body.dataset.csrf;
            const r = await fetch('/MAAS/r/images/auto-import', {method: 'POST',
                headers: {'X-CSRFToken': csrf, 'Content-Type': 'application/x-www-form-urlencoded'},
                body: 'enabled=false'});
            return r.status;
        }"""
    )
    assert status == 403


def test_a_registered_rack_is_listed_with_its_sync_state(
    admin_page: Page, region: RegionProcess, rack: str
) -> None:
    """A real rack registered with the region appears in the racks table and turns Synced."""
    page = admin_page
    row = page.locator("#racks-table tr", has_text=RACK_HOSTNAME)
    expect(row).to_contain_text("Synced", timeout=60_000)
    expect(row.locator("td").nth(1)).not_to_have_text("—")


def test_phone_width_page_is_readable_without_horizontal_scroll(
    browser: Browser, region: RegionProcess, rack: str
) -> None:
    """At 390×844 the page and its status tables fit the width (no sideways scrolling)."""
    context = browser.new_context(
        viewport={"width": 390, "height": 844},
        device_scale_factor=1,
        is_mobile=True,
        has_touch=True,
    )
    try:
        page = context.new_page()
        page.set_default_timeout(20_000)
        login(page, region, ADMIN)
        expect(status_cell(page, "ubuntu/noble amd64/ga-24.04")).to_have_text("Synced")
        sizes = page.evaluate("() => [document.scrollingElement.scrollWidth, window.innerWidth]")
        assert sizes[0] <= sizes[1], sizes
        overflow = page.evaluate(
            """() => ['images-table', 'racks-table'].map((id) => {
                const table = document.getElementById(id);
                return table.scrollWidth - table.clientWidth;
            })"""
        )
        assert overflow == [0, 0]
        expect(page.locator("#racks-table")).to_contain_text(RACK_HOSTNAME)
        for control in ("Save selection", "Save source", "Upload"):
            box = page.get_by_role("button", name=control, exact=True).bounding_box()
            assert box is not None, control
            assert 0 <= box["x"] <= box["x"] + box["width"] <= 390, control
        font = page.evaluate("() => parseFloat(getComputedStyle(document.body).fontSize)")
        assert font >= 14
        page.screenshot(path=str(SHOTS / "images-page-phone.png"), full_page=True)
    finally:
        context.close()


def test_logout_ends_the_session(admin_page: Page, region: RegionProcess) -> None:
    """Log out returns to the login form and the page asks for a login again."""
    page = admin_page
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/MAAS/r/login")
    page.goto(region.url + PAGE)
    expect(page.get_by_label("Username")).to_be_visible()


def test_the_sixth_bad_password_is_rate_limited_with_a_clear_message(
    browser: Browser, region: RegionProcess
) -> None:
    """Five wrong passwords say so; the sixth attempt, and then even the right one, is told to wait."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.goto(region.url + "/MAAS/r/login")
        statuses = []
        for attempt in range(7):
            page.get_by_label("Username").fill(LOCKED[0])
            password = LOCKED[1] if attempt == 6 else f"wrong {attempt}"
            page.get_by_label("Password").fill(password)
            with page.expect_response(re.compile(r"/MAAS/r/login")) as answer:
                page.get_by_role("button", name="Log in").click()
            statuses.append(answer.value.status)
            if attempt < 5:
                expect(page.locator("#login-error")).to_have_text("⚠ Wrong username or password.")
        assert statuses == [401] * 5 + [429, 429]
        expect(page.locator("#login-error")).to_have_text(
            re.compile(r"Too many failed attempts\. Try again in \d+ seconds\.")
        )
        expect(page.get_by_label("Username")).to_have_value(LOCKED[0])
        assert page.url.startswith(region.url + "/MAAS/r/login")
        assert not [c for c in context.cookies() if c["name"] == "bootsync_session"]
    finally:
        context.close()
