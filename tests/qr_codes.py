"""QR codes read back from a PDF's first page, rendered at 150 dpi as a phone's camera would see it."""

import pypdfium2
import zxingcpp


def qr_codes(pdf: bytes) -> list[str]:
    """Only the QR codes that the documents print (model 2) are looked for. Asked for every format, the
    reader now and then also takes a corner of the code for a Micro QR code and reports a few digits
    that are not on the page."""
    page = pypdfium2.PdfDocument(pdf)[0]
    image = page.render(scale=150 / 72).to_pil()
    return [found.text for found in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCodeModel2)]
