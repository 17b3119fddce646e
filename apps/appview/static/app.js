// Progressive enhancement only: every page works without this script. It shows the copy
// buttons (hidden in the HTML, since they need a script) and copies their text.
for (const button of document.querySelectorAll('button[data-copy]')) {
  button.hidden = false
  button.addEventListener('click', async () => {
    const label = button.textContent
    try {
      await navigator.clipboard.writeText(button.dataset.copy)
      button.textContent = 'Copied'
    } catch {
      button.textContent = 'Copy failed'
    }
    setTimeout(() => {
      button.textContent = label
    }, 1500)
  })
}
