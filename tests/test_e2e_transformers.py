"""The transformer pages in a real browser against a real ``streamlit run`` server: train the GPT a few
steps and cancel a longer run, generate with tokens streaming in, open the attention explorer's head view
and click a model-view thumbnail into it, and drive a saved tiny GPT-2 folder with the same controls."""
from __future__ import annotations

from test_e2e_browser import EXCEPTION, LOAD_MS, app_server, browser, page, set_number, wait_idle  # noqa: F401
from test_hf_causal_lm import save_tiny_gpt2

# Records every "N / M tokens" progress caption the page shows while it streams (the text redraws too fast
# to sample from outside, so a MutationObserver counts the distinct values as they come).
WATCH_STREAM = """() => {
  window.__streamed = new Set();
  new MutationObserver(() => {
    for (const el of document.querySelectorAll('[data-testid="stCaptionContainer"]')) {
      const m = el.innerText.match(/^(\\d+) \\/ (\\d+) tokens/);
      if (m) window.__streamed.add(Number(m[1]));
    }
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def open_page(page, url: str, path: str, heading: str) -> None:
    page.goto(url + path)
    page.get_by_role("heading", name=heading).wait_for(timeout=LOAD_MS)
    wait_idle(page)


def generate(page, prompt: str, tokens: int) -> str:
    """Type a prompt, generate ``tokens`` new ones, wait for the finished text and return it."""
    box = page.get_by_role("textbox", name="Prompt")
    box.fill(prompt)
    box.press("Control+Enter")
    wait_idle(page)
    set_number(page, "max new tokens", tokens)
    page.evaluate(WATCH_STREAM)
    page.get_by_role("button", name="Generate").click()
    page.get_by_text("Each new token and the candidates").wait_for(timeout=180_000)
    wait_idle(page)
    assert page.locator(EXCEPTION).count() == 0
    return page.locator('[data-testid="stCode"]').first.inner_text()


def test_gpt_trains_cancels_and_streams_its_text(app_server, page):
    open_page(page, app_server["url"], "/text", "Text generation")
    text = generate(page, "def ", 1500)
    assert text.startswith("def ") and len(text.encode()) >= 1500
    streamed = page.evaluate("() => [...window.__streamed]")
    assert len(streamed) >= 3 and min(streamed) < 1500, streamed   # the text arrived in pieces, as it was made
    assert page.get_by_text("tokens/s").count() >= 1

    page.get_by_role("tab", name="Train").click()
    page.get_by_role("button", name="Start training").wait_for()
    wait_idle(page)
    set_number(page, "max steps", 3)
    page.get_by_role("button", name="Start training").click()
    success = page.locator('[data-testid="stAlertContentSuccess"]').filter(has_text="Training finished")
    success.wait_for(timeout=300_000)
    page.get_by_text("generated at step").first.wait_for()
    set_number(page, "epochs", 50)
    set_number(page, "max steps", 100_000)
    page.get_by_role("button", name="Start training").click()
    page.locator('[data-testid="stProgress"]').filter(has_text="ETA").first.wait_for(timeout=120_000)
    page.get_by_role("button", name="Cancel").click()
    page.locator('[data-testid="stAlertContentWarning"]').filter(has_text="cancelled").wait_for(timeout=120_000)
    assert page.locator(EXCEPTION).count() == 0


def test_attention_head_view_and_a_model_view_click(app_server, page):
    open_page(page, app_server["url"], "/attention", "Attention explorer")
    page.get_by_role("tab", name="Head view").wait_for()
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=LOAD_MS)
    wait_idle(page)
    page.get_by_role("tab", name="Model view").click()
    points = page.locator('[data-testid="stPlotlyChart"] .scatterlayer .point')
    points.first.wait_for(timeout=LOAD_MS)
    wait_idle(page)
    target = points.nth(points.count() - 1)   # the last layer's last head
    target.click(force=True)
    wait_idle(page)
    head_tab = page.get_by_role("tab", name="Head view")
    page.wait_for_function("() => [...document.querySelectorAll('[role=tab]')].some("
                           "t => t.innerText.includes('Head view') && t.getAttribute('aria-selected') === 'true')",
                           timeout=60_000)
    assert head_tab.get_attribute("aria-selected") == "true"
    page.get_by_text("One head").wait_for()
    assert page.locator(EXCEPTION).count() == 0


def test_a_saved_tiny_gpt2_folder_is_driven_by_the_same_controls(app_server, page, tmp_path):
    folder = save_tiny_gpt2(tmp_path / "tiny-gpt2")
    open_page(page, app_server["url"], "/text", "Text generation")
    box = page.get_by_role("textbox", name="or load a local Hugging Face folder / hub id")
    box.fill(str(folder))
    box.press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="Generate").wait_for()
    text = generate(page, "The ", 20)
    assert text.startswith("The ")
    assert page.get_by_text("hf-causal-lm").count() >= 1 or "tiny-gpt2" in page.content()
